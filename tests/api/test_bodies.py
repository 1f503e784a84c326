"""What a bulk body may be: JSON media types the viewset's parsers accept (415 otherwise),
gzip within MAX_BYTES unpacked (a bomb is 413), chunked bodies read to their end within
MAX_BYTES, and bodies that end early are 400 -- in process and through gunicorn."""

import gzip
import io
import json
import zlib

import pytest
from rest_framework.parsers import BaseParser, JSONParser

from project.catalog.views import ProductViewSet
from tests.api.helpers import BULK_URL, new_product, skus

pytestmark = pytest.mark.django_db

URL = BULK_URL.format("products")
MiB = 1024 * 1024
BODY = json.dumps({"items": [new_product("B-1"), new_product("B-2")]}).encode()


def post(client, body: bytes, content_type: str | None = "application/json", **extra):
    if content_type is None:
        # The test client always sends a Content-Type with a body: take it away.
        return client.generic("POST", URL, data=body, content_type="", **extra)
    return client.generic("POST", URL, data=body, content_type=content_type, **extra)


# -- media types -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        None,
        "application/vnd.api+json",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
        "json",
    ],
)
def test_bodies_drf_would_not_parse_as_json_are_415(api, tools, content_type):
    response = post(api, BODY, content_type)

    assert response.status_code == 415
    shown = content_type or ""
    assert response.json() == {"detail": f'Unsupported media type "{shown}" in request.'}
    assert skus() == []


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/json; charset=utf-8", "Application/JSON"]
)
def test_json_is_accepted_with_or_without_parameters(api, tools, content_type):
    response = post(api, BODY, content_type)
    assert response.status_code == 200, response.content
    assert skus() == ["B-1", "B-2"]


class JSONAPIParser(JSONParser):
    media_type = "application/vnd.api+json"


class PlainTextParser(BaseParser):
    media_type = "text/plain"


def test_the_viewsets_own_parsers_decide(api, tools, monkeypatch):
    monkeypatch.setattr(ProductViewSet, "parser_classes", [JSONAPIParser, PlainTextParser])

    assert post(api, BODY, "application/vnd.api+json").status_code == 200
    assert post(api, BODY, "application/json").status_code == 415  # not among its parsers
    assert post(api, BODY, "text/plain").status_code == 415  # a parser, but not JSON
    assert skus() == ["B-1", "B-2"]


def test_the_media_type_is_checked_after_permissions(client_for, tools):
    assert post(client_for(None), BODY, "text/plain").status_code == 401


# -- gzip ------------------------------------------------------------------------------


def test_a_gzip_body_is_unpacked(api, tools):
    response = post(api, gzip.compress(BODY), HTTP_CONTENT_ENCODING="gzip")
    assert response.status_code == 200, response.content
    assert skus() == ["B-1", "B-2"]


def test_gzip_members_one_after_the_other_are_one_body(api, tools):
    packed = gzip.compress(BODY[:10]) + gzip.compress(BODY[10:])
    assert post(api, packed, HTTP_CONTENT_ENCODING="x-gzip").status_code == 200
    assert skus() == ["B-1", "B-2"]


def bomb(unpacked: int) -> bytes:
    """Valid JSON of ``unpacked`` bytes, gzip-compressed without ever holding it whole."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    parts = [packer.compress(b'{"items": [')]
    block = b" " * MiB
    for _ in range(unpacked // MiB):
        parts.append(packer.compress(block))
    parts.append(packer.compress(b"]}"))
    parts.append(packer.flush())
    return b"".join(parts)


def test_a_gzip_bomb_is_413_without_unpacking_it(api, tools):
    packed = bomb(64 * MiB)
    assert len(packed) < 1 * MiB

    response = post(api, packed, HTTP_CONTENT_ENCODING="gzip")

    assert response.status_code == 413
    body = response.json()
    assert body["error"] == "batch_too_large"
    # A bulk route that can run jobs reads up to MAX_ASYNC_BYTES (32 MiB), no further.
    assert body["limit"] == 32 * MiB
    assert body["received"] == 32 * MiB + 1  # unpacked no further than one byte past
    assert "the gzip body unpacks to more than that" in body["message"]


def test_the_unpacked_limit_is_max_bytes(api, tools, settings):
    settings.BULKOPS = {"MAX_BYTES": len(BODY) - 1}
    response = post(api, gzip.compress(BODY), HTTP_CONTENT_ENCODING="gzip")
    assert response.status_code == 413
    settings.BULKOPS = {"MAX_BYTES": len(BODY)}
    assert post(api, gzip.compress(BODY), HTTP_CONTENT_ENCODING="gzip").status_code == 200


@pytest.mark.parametrize(
    ("packed", "message"),
    [
        (b"not gzip at all", "The request body is not valid gzip"),
        (gzip.compress(BODY)[:-12], "The gzip request body ends early"),
        (gzip.compress(BODY) + b"trailing", "The request body is not valid gzip"),
    ],
)
def test_broken_gzip_is_400(api, tools, packed, message):
    response = post(api, packed, HTTP_CONTENT_ENCODING="gzip")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_envelope"
    assert message in response.json()["message"]
    assert skus() == []


@pytest.mark.parametrize("coding", ["br", "deflate", "gzip, gzip", "compress"])
def test_other_content_encodings_are_415(api, tools, coding):
    response = post(api, BODY, HTTP_CONTENT_ENCODING=coding)
    assert response.status_code == 415
    assert response.json() == {
        "detail": f'Unsupported Content-Encoding "{coding}" in request; send the body as it '
        "is or compressed with gzip."
    }


def test_identity_is_no_encoding(api, tools):
    assert post(api, BODY, HTTP_CONTENT_ENCODING="identity").status_code == 200


# -- chunked and short bodies, in process ------------------------------------------------


def chunked(body: bytes, *, terminated: bool = True) -> dict:
    """What a WSGI server gives a chunked request: no Content-Length, the decoded body
    on wsgi.input, ``wsgi.input_terminated`` where it marks the end."""
    return {
        "CONTENT_LENGTH": "",
        "HTTP_TRANSFER_ENCODING": "chunked",
        "wsgi.input": io.BytesIO(body),
        "wsgi.input_terminated": terminated,
    }


def test_a_chunked_body_is_read_to_its_end(api, tools):
    response = post(api, BODY, **chunked(BODY))
    assert response.status_code == 200, response.content
    assert skus() == ["B-1", "B-2"]


def test_a_chunked_body_over_max_bytes_is_413(api, tools, settings):
    settings.BULKOPS = {"MAX_BYTES": 100}
    response = post(api, BODY, **chunked(BODY))
    assert response.status_code == 413
    assert response.json()["limit"] == 100
    assert skus() == []


def test_a_chunked_body_a_server_cannot_end_is_411(api, tools):
    response = post(api, BODY, **chunked(BODY, terminated=False))
    assert response.status_code == 411
    assert response.json()["error"] == "length_required"


def test_a_body_shorter_than_its_content_length_is_400(api, tools):
    extra = {"CONTENT_LENGTH": str(len(BODY) + 10), "wsgi.input": io.BytesIO(BODY)}
    response = post(api, BODY, **extra)
    assert response.status_code == 400
    assert response.json()["message"] == (
        f"The request body ended after {len(BODY)} of the {len(BODY) + 10} bytes its "
        "Content-Length announced; send the whole body."
    )
    assert skus() == []


# -- through gunicorn --------------------------------------------------------------------


def raw_post(live, head: dict, body: bytes) -> bytes:
    lines = [f"POST {URL} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in {**live.auth, **head}.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def in_chunks(body: bytes, size: int = 1000) -> bytes:
    out = b"".join(
        b"%x\r\n%s\r\n" % (len(body[i : i + size]), body[i : i + size])
        for i in range(0, len(body), size)
    )
    return out + b"0\r\n\r\n"


JSON_CHUNKED = {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}


def test_live_a_chunked_body_is_written(live, tools):
    from tests.api.live import status_and_json

    status, body = status_and_json(live.raw(raw_post(live, JSON_CHUNKED, in_chunks(BODY, 50))))
    assert status == 200, body
    assert body["summary"]["created"] == 2
    assert skus() == ["B-1", "B-2"]


def test_live_a_gzip_chunked_body_is_written(live, tools):
    from tests.api.live import status_and_json

    head = {**JSON_CHUNKED, "Content-Encoding": "gzip"}
    status, body = status_and_json(live.raw(raw_post(live, head, in_chunks(gzip.compress(BODY)))))
    assert status == 200, body
    assert skus() == ["B-1", "B-2"]


def test_live_a_chunked_body_over_max_bytes_is_413(live, tools):
    from tests.api.live import status_and_json

    big = json.dumps({"items": [new_product("B-1", name="x" * (6 * MiB))]}).encode()
    status, body = status_and_json(live.raw(raw_post(live, JSON_CHUNKED, in_chunks(big, 65536))))
    assert status == 413
    # Read to its end (below MAX_ASYNC_BYTES), then refused as too big for a synchronous batch.
    assert body["limit"] == 5 * MiB and body["received"] == len(big)
    assert skus() == []


def test_live_a_chunked_body_that_ends_early_is_400(live, tools):
    from tests.api.live import status_and_json

    whole = in_chunks(BODY, 100)
    cut = whole[: len(whole) - 40]  # the client stops mid-chunk and closes its side
    status, body = status_and_json(live.raw(raw_post(live, JSON_CHUNKED, cut)))
    assert status == 400
    assert "could not be read to its end" in body["message"]
    assert skus() == []


def test_live_a_body_shorter_than_its_content_length_is_400(live, tools):
    from tests.api.live import status_and_json

    head = {"Content-Type": "application/json", "Content-Length": str(len(BODY) + 100)}
    status, body = status_and_json(live.raw(raw_post(live, head, BODY)))
    assert status == 400
    assert f"ended after {len(BODY)} of the {len(BODY) + 100} bytes" in body["message"]
    assert skus() == []


def test_live_a_text_plain_body_is_415(live, tools):
    status, _, body = live.request("POST", URL, BODY, {**live.auth, "Content-Type": "text/plain"})
    assert status == 415
    assert json.loads(body) == {"detail": 'Unsupported media type "text/plain" in request.'}
    assert skus() == []


def test_no_body_at_all_is_told_it_is_empty_not_415(api):
    response = api.generic("DELETE", URL)
    assert response.status_code == 400
    assert response.json()["message"].startswith("The request body is empty")
