"""Import throughput: bulkops' engine vs django-import-export, same data, same database.

    python bench/import_throughput.py --rows 100000
    python bench/import_throughput.py --rows 1000000 --formats csv --ie-rows 0

Generates N product rows as CSV and XLSX, then imports each file into an empty
product table, every import in its own child process so its peak RSS is its own:

- bulkops: the file read by ``bulkops.engine.readers.open_rows`` and written by
  ``run_batch`` (mode create, atomic none, chunks of 1000) — what
  ``manage.py bulk_import`` does;
- django-import-export: a plain ``ModelResource`` with ``import_id_fields=["sku"]``
  and a ``ForeignKeyWidget`` for the category by name, as its users write it,
  fed the same file through tablib.

django-import-export runs about a thousand rows a second, so by default it gets
the first ``--ie-rows`` rows (20,000) of the same file; ``--ie-rows 0`` gives it all.
Prints rows/s, peak RSS and the ratio. The database is ``DATABASE_URL`` (default
a ``bulkops_bench`` database on the local PostgreSQL, created if missing).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchdb import ROOT, ensure_database, setup_django

DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/bulkops_bench"
HEADERS = ["sku", "name", "category", "price", "quantity", "active", "released"]
CATEGORIES = [f"Category {i}" for i in range(20)]


def product_row(i: int) -> list[str]:
    return [
        f"SKU-{i:08d}",
        f"Product number {i}",
        CATEGORIES[i % len(CATEGORIES)],
        f"{(i * 7) % 10000 / 100:.2f}",
        str(i % 500),
        "true" if i % 3 else "false",
        f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}",
    ]


def write_csv(path: Path, rows: int) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(HEADERS)
        for i in range(rows):
            writer.writerow(product_row(i))


def write_xlsx(path: Path, rows: int) -> None:
    from openpyxl import Workbook

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("products")
    sheet.append(HEADERS)
    for i in range(rows):
        sku, name, category, price, quantity, active, released = product_row(i)
        sheet.append([sku, name, category, float(price), int(quantity), active == "true", released])
    workbook.save(path)


# -- child side: one import, measured -------------------------------------------------


def _reset_tables() -> None:
    from django.db import connection

    from project.catalog.models import Category, Order, Product

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "TRUNCATE catalog_order, catalog_product, catalog_category RESTART IDENTITY CASCADE"
            )
    else:
        Order.objects.all().delete()
        Product.objects.all().delete()
        Category.objects.all().delete()
    Category.objects.bulk_create([Category(name=n) for n in CATEGORIES])


def import_with_bulkops(path: Path) -> dict:
    from bulkops.engine import run_batch
    from bulkops.engine.readers import open_rows
    from project.catalog.serializers import ProductSerializer

    failed = []

    def on_row(result):
        if result.status == "error" and len(failed) < 5:
            failed.append((result.row, result.errors))

    with open_rows(path, filename=path.name, serializer=ProductSerializer(), mode="create") as rows:
        result = run_batch(
            serializer_class=ProductSerializer,
            rows=rows,
            mode="create",
            atomic="none",
            chunk_size=1000,
            keep_results=False,
            with_data=False,
            on_row=on_row,
        )
    return {"rows": result.total, "ok": result.succeeded, "sample_errors": failed}


def import_with_import_export(path: Path, limit: int) -> dict:
    import tablib
    from import_export import fields, resources, widgets

    from project.catalog.models import Category, Product

    class ProductResource(resources.ModelResource):
        category = fields.Field(
            column_name="category",
            attribute="category",
            widget=widgets.ForeignKeyWidget(Category, field="name"),
        )

        class Meta:
            model = Product
            import_id_fields = ["sku"]
            fields = ("sku", "name", "category", "price", "quantity", "active", "released")

    if path.suffix == ".csv":
        with path.open(encoding="utf-8") as f:
            reader = csv.reader(f)
            headers = next(reader)
            data = tablib.Dataset(headers=headers)
            for i, row in enumerate(reader):
                if limit and i >= limit:
                    break
                data.append(row)
    else:
        data = tablib.Dataset().load(path.read_bytes(), format="xlsx")
        if limit and len(data) > limit:
            data = tablib.Dataset(*data[:limit], headers=data.headers)
    result = ProductResource().import_data(data, raise_errors=False)
    errors = len(result.invalid_rows) + sum(1 for r in result.rows if r.errors)
    return {"rows": len(data), "ok": len(data) - errors, "sample_errors": []}


def child_main(args: argparse.Namespace) -> None:
    setup_django(args.database_url)
    import resource

    from project.catalog.models import Product

    _reset_tables()
    path = Path(args.file)
    start = time.perf_counter()
    if args.child == "bulkops":
        outcome = import_with_bulkops(path)
    else:
        outcome = import_with_import_export(path, args.ie_rows)
    seconds = time.perf_counter() - start
    outcome.update(seconds=seconds, in_db=Product.objects.count())
    outcome["self_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(outcome))


# -- parent side -------------------------------------------------------------------------


def run_child(tool: str, path: Path, args: argparse.Namespace) -> dict:
    command = [
        sys.executable,
        __file__,
        "--child",
        tool,
        "--file",
        str(path),
        "--database-url",
        args.database_url,
        "--ie-rows",
        str(args.ie_rows),
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    out = process.stdout.read()  # type: ignore[union-attr]
    _, status, _usage = os.wait4(process.pid, 0)
    if status != 0:
        raise SystemExit(f"{tool} import of {path.name} failed (exit status {status}).")
    outcome = json.loads(out.strip().splitlines()[-1])
    outcome["peak_rss_mb"] = outcome.pop("self_rss_mb")
    return outcome


def report(tool: str, fmt: str, outcome: dict) -> float:
    rate = outcome["rows"] / outcome["seconds"] if outcome["seconds"] else 0.0
    print(
        f"{tool:<22} {fmt:<5} {outcome['rows']:>9,} rows  {outcome['seconds']:8.2f} s  "
        f"{rate:>9,.0f} rows/s  peak RSS {outcome['peak_rss_mb']:6.0f} MB  "
        f"(written: {outcome['in_db']:,})"
    )
    if outcome["ok"] != outcome["rows"] or outcome["in_db"] != outcome["rows"]:
        print(f"  ! not every row was imported: {outcome}")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--formats", default="csv,xlsx", help="comma-separated: csv, xlsx")
    parser.add_argument(
        "--ie-rows",
        type=int,
        default=20_000,
        help="rows given to django-import-export (0 = all); its rate is per row either way",
    )
    parser.add_argument("--skip-import-export", action="store_true")
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL") or DEFAULT_DB)
    parser.add_argument("--child", choices=["bulkops", "import-export"], help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(args)
        return

    ensure_database(args.database_url)
    print(f"database: {args.database_url}  rows: {args.rows:,}  python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory(prefix="bulkops-bench-") as tmp:
        for fmt in [f.strip() for f in args.formats.split(",") if f.strip()]:
            path = Path(tmp) / f"products.{fmt}"
            started = time.perf_counter()
            (write_csv if fmt == "csv" else write_xlsx)(path, args.rows)
            size = path.stat().st_size / 1024 / 1024
            print(
                f"\n{fmt}: {path.name} {size:.1f} MB, "
                f"generated in {time.perf_counter() - started:.1f} s"
            )
            ours = report("bulkops", fmt, run_child("bulkops", path, args))
            if args.skip_import_export:
                continue
            theirs = report("django-import-export", fmt, run_child("import-export", path, args))
            if theirs:
                print(f"ratio bulkops / django-import-export ({fmt}): {ours / theirs:.1f}x")


if __name__ == "__main__":
    main()
