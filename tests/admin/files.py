"""Hostile and broken files for the upload tests, made in memory."""

from __future__ import annotations

import io
import zipfile

from tests.admin.conftest import csv_bytes, xlsx_bytes

GOOD_HEADER = ["sku", "name", "category", "price", "quantity"]


def zip_bomb_xlsx() -> bytes:
    """An .xlsx whose sheet unpacks to 50 MiB of zeros from a few kilobytes."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("xl/worksheets/sheet1.xml", b"\0" * (50 * 1024 * 1024))
    return out.getvalue()


def truncated_xlsx() -> bytes:
    data = xlsx_bytes([GOOD_HEADER, ["A-1", "Hammer", "Tools", "1", "1"]])
    return data[: len(data) // 2]


def encrypted_xlsx() -> bytes:
    import msoffcrypto

    plain = io.BytesIO(xlsx_bytes([GOOD_HEADER, ["A-1", "Hammer", "Tools", "1", "1"]]))
    out = io.BytesIO()
    msoffcrypto.OfficeFile(plain).encrypt("secret", out)
    return out.getvalue()


BAD_FILES = {
    # name: (file name, bytes, a phrase the admin message must hold)
    "wrong extension": ("products.pdf", b"%PDF-1.4", "Files of type '.pdf' cannot be imported"),
    "no extension": ("products", b"sku\nA", "Files without an extension cannot be imported"),
    "junk bytes": ("products.xlsx", bytes(range(256)) * 40, "not a readable XLSX workbook"),
    "zip bomb": ("products.xlsx", None, "zip bomb"),
    "password": ("products.xlsx", None, "protected with a password"),
    "truncated": ("products.xlsx", None, "not a readable XLSX workbook"),
    "empty": ("products.csv", b"", "The file is empty"),
    "blank lines only": ("products.csv", b"\n\n\n", "is empty"),
    "only headers": ("products.xlsx", None, "no rows below them"),
    "binary csv": ("products.csv", b"\xff\xfe\x00\xd8" * 100, "is not valid"),
}


def bad_file(kind: str) -> tuple[str, bytes, str]:
    name, data, phrase = BAD_FILES[kind]
    if data is None:
        data = {
            "zip bomb": zip_bomb_xlsx,
            "password": encrypted_xlsx,
            "truncated": truncated_xlsx,
            "only headers": lambda: xlsx_bytes([GOOD_HEADER]),
        }[kind]()
    return name, data, phrase


__all__ = ["BAD_FILES", "GOOD_HEADER", "bad_file", "csv_bytes", "xlsx_bytes"]
