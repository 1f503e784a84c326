"""Bad input to the bulk route: the documented 4xx or an item's error, never a 500, and
nothing written."""

import io
import json

import pytest
from django.http import HttpRequest

from bulkops.envelope import BatchTooLarge, read_body
from tests.api.helpers import bulk, new_product, skus

pytestmark = pytest.mark.django_db

MiB = 1024 * 1024
GOOD = new_product("A-1")


def envelope_error(response) -> str:
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["error"] == "invalid_envelope"
    return body["message"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "The request body is empty"),
        (b"{items: []}", "The request body is not valid JSON"),
        (b"\xff\xfe\x00garbage", "The request body is not valid JSON"),
        (b'{"items": [NaN]}', "The request body is not valid JSON"),
        (b'{"items": [{"price": 1e400}]}', "the number 1e400 is out of range"),
        (b'[{"sku": "A-1"}]', "must be a JSON object with a list 'items'; got a list"),
        (b'"items"', "must be a JSON object with a list 'items'; got a string"),
        (b"{}", "The request body has no 'items'"),
        (b'{"items": {"sku": "A-1"}}', "'items' must be a list; got an object"),
        (b'{"items": null}', "'items' must be a list; got null"),
        (b'{"items": [{}, {}, "A-1"]}', "items[3] must be an object; got a string"),
        (b'{"items": [[1]]}', "items[1] must be an object; got a list"),
        (b'{"items": [], "atomic": "sometimes"}', "Unknown atomic 'sometimes'; use one of"),
        (b'{"items": [], "atomic": ""}', "Unknown atomic ''"),
        (b'{"items": [], "atomic": 1}', "Unknown atomic a number"),
        (b'{"items": [], "dry_run": "yes"}', "'dry_run' must be true or false; got a string"),
        (b'{"items": [], "chunk_size": 0}', "chunk_size must be a whole number from 1 to 10000"),
        (b'{"items": [], "chunk_size": -5}', "chunk_size must be a whole number from 1 to 10000"),
        (b'{"items": [], "chunk_size": 99999999999}', "chunk_size must be a whole number"),
        (b'{"items": [], "chunk_size": "10"}', "chunk_size must be a whole number"),
        (b'{"items": [], "chunk_size": 2.5}', "chunk_size must be a whole number"),
        (b'{"items": [], "chunk_size": true}', "chunk_size must be a whole number"),
        (b'{"items": [], "async": "no"}', "'async' must be true or false"),
        (b'{"items": [], "atomc": "all"}', "Unknown member 'atomc'"),
    ],
)
def test_a_bad_envelope_is_400_and_says_what_is_wrong(api, tools, body, message):
    # A valid item goes first wherever the body has items (so items[0] is valid):
    # nothing may be written all the same.
    body = body.replace(b'"items": [', b'"items": [' + json.dumps(GOOD).encode() + b", ", 1)
    body = body.replace(b", ]", b"]")

    assert message in envelope_error(bulk(api, "post", "products", body))
    assert skus() == []


@pytest.mark.parametrize("method", ["post", "patch", "put", "delete"])
def test_every_method_checks_the_envelope(api, method):
    assert "'items' must be a list" in envelope_error(bulk(api, method, "products", {"items": 1}))


def test_deep_nesting_is_400_not_a_recursion_error(api, tools):
    deep = b'{"items": [' + b"[" * 100_000 + b"]" * 100_000 + b"]}"
    assert "nested too deeply" in envelope_error(bulk(api, "post", "products", deep))
    moderate = {"items": [new_product("A-1", name=json.loads("[" * 70 + "]" * 70))]}
    assert "nested too deeply" in envelope_error(bulk(api, "post", "products", moderate))
    assert skus() == []


def test_a_form_body_is_415(api):
    response = api.post("/api/products/bulk/", {"items": "x"})  # multipart
    assert response.status_code == 415
    assert response.json()["detail"].startswith('Unsupported media type "multipart/form-data')


def test_a_10_mb_body_is_413_before_it_is_read(api, tools):
    body = json.dumps({"items": [new_product("A-1", name="x" * (10 * MiB))]})

    response = bulk(api, "post", "products", body)

    assert response.status_code == 413
    assert response.json() == {
        "error": "batch_too_large",
        "message": f"Maximum {5 * MiB} bytes per batch; received {len(body)}",
        "limit": 5 * MiB,
        "received": len(body),
    }
    assert skus() == []


def test_too_many_items_is_413_with_limit_and_received(api, tools, settings):
    # Below ASYNC_THRESHOLD the request runs synchronously, within MAX_ITEMS.
    settings.BULKOPS = {"MAX_ITEMS": 1000, "ASYNC_THRESHOLD": 5000}
    items = [new_product(f"A-{i}") for i in range(2500)]

    response = bulk(api, "post", "products", {"items": items})

    assert response.status_code == 413
    assert response.json() == {
        "error": "batch_too_large",
        "message": "Maximum 1000 items per batch; received 2500",
        "limit": 1000,
        "received": 2500,
    }
    assert skus() == []


def test_a_smaller_byte_limit_is_read_from_settings(api, tools, settings):
    settings.BULKOPS = {"MAX_BYTES": 100}
    response = bulk(api, "post", "products", {"items": [new_product("A-1", name="x" * 200)]})
    assert response.status_code == 413
    assert response.json()["limit"] == 100


class _Unreadable(io.BytesIO):
    def read(self, *args):
        raise AssertionError("the body was read")


def test_a_declared_length_over_the_limit_is_refused_without_reading():
    request = HttpRequest()
    request.META["CONTENT_LENGTH"] = str(10 * MiB)
    request._stream = _Unreadable()

    with pytest.raises(BatchTooLarge) as caught:
        read_body(request, limit=MiB)
    assert caught.value.extra == {"limit": MiB, "received": 10 * MiB}


def test_a_body_without_content_length_is_read_no_further_than_the_limit():
    request = HttpRequest()
    request._stream = stream = io.BytesIO(b"x" * (2 * MiB))

    with pytest.raises(BatchTooLarge):
        read_body(request, limit=MiB)
    assert stream.tell() == MiB + 1


def test_nul_characters_are_item_errors_not_500s(api, products):
    body = (
        '{"items": [{"sku": "N\\u0000", "name": "n", "category": "Tools", "price": "1"},'
        ' {"sku": "N-2", "name": "n", "category": "To\\u0000ols", "price": "1"},'
        ' {"sku": "N-3", "name": "n", "category": "Tools", "price": "1"}]}'
    )

    results = bulk(api, "post", "products", body).json()["results"]

    assert results[0]["errors"] == {"sku": ["Null characters are not allowed."]}
    assert results[1]["errors"] == {"category": ["Null characters are not allowed."]}
    assert results[2]["status"] == "created"
    for method in ("patch", "put", "delete"):
        body = '{"items": [{"sku": "E-0\\u0000", "name": "n", "category": "Tools", "price": "1"}]}'
        results = bulk(api, method, "products", body).json()["results"]
        assert results[0]["errors"] == {"sku": ["Null characters are not allowed."]}
    assert skus() == ["E-0", "E-1", "E-2", "E-3", "E-4", "N-3"]


def test_lone_surrogates_are_item_errors_not_500s(api, products):
    body = (
        '{"items": [{"sku": "S-1", "name": "n", "category": "To\\udc00ols", "price": "1"},'
        ' {"sku": "S-2", "name": "n", "category": "Tools", "price": "1", "_ref": "\\ud800"}]}'
    )

    results = bulk(api, "post", "products", body).json()["results"]

    # As the single endpoint says it: the lookup cannot be asked (DRF: "Invalid value.").
    assert results[0]["errors"] == {"category": ["Invalid value."]}
    assert results[1] == {
        "index": 1,
        "status": "error",
        "errors": {"_ref": ["Surrogate characters are not allowed: U+D800."]},
    }
    assert len(skus()) == 5


@pytest.mark.parametrize(
    ("member", "value"),
    [
        ("_ref", 5),
        ("_ref", "r" * 256),
        ("_idempotency_key", ""),
        ("_idempotency_key", 7),
        ("_idempotency_key", "k" * 256),
        ("_idempotency_key", "tab\there"),
    ],
)
def test_unusable_reserved_members_are_the_items_errors(api, tools, member, value):
    items = [new_product("A-1", **{member: value}), new_product("A-2")]

    results = bulk(api, "post", "products", {"items": items}).json()["results"]

    assert list(results[0]["errors"]) == [member]
    assert results[1]["status"] == "created"
    assert skus() == ["A-2"]


def test_reserved_members_are_not_validated_as_fields(api, tools):
    items = [new_product("A-1", _ref="r", _idempotency_key="k")]
    result = bulk(api, "post", "products", {"items": items}).json()["results"][0]
    assert result["status"] == "created"
    assert "_ref" not in result["data"]


def test_an_unusable_idempotency_key_header_is_400(api, tools):
    response = bulk(api, "post", "products", {"items": [GOOD]}, HTTP_IDEMPOTENCY_KEY="k" * 256)
    assert "Idempotency-Key must be" in envelope_error(response)
    assert skus() == []


def test_other_methods_on_the_bulk_route_are_405(api):
    assert api.get("/api/products/bulk/").status_code == 405


def test_max_bytes_not_djangos_upload_limit_bounds_the_body(api, tools, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    items = [new_product(f"A-{i}", name=f"Product {i:0>150}") for i in range(20)]

    response = bulk(api, "post", "products", {"items": items})

    assert response.status_code == 200
    assert len(skus()) == 20
