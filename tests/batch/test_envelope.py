"""The batch envelope is checked in full before anything runs: 400/413/415, never a 500."""

import json
import sys

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from rest_framework.views import APIView

from bulkops.batch.envelope import parse_batch_envelope
from bulkops.batch.targets import UrlPolicy
from bulkops.batch.views import BatchView
from bulkops.envelope import BatchTooLarge, InvalidEnvelope
from project.catalog.models import Category
from tests.batch.conftest import URL, send

pytestmark = pytest.mark.django_db

# The first request would write; the envelope check must stop it from running at all.
WRITE = {"id": "w", "method": "POST", "url": "/api/categories/", "body": {"name": "Written"}}


@pytest.fixture
def dispatched(monkeypatch):
    """Every view dispatched during the test (the batch view itself excluded)."""
    calls = []
    original = APIView.dispatch

    def recording(self, request, *args, **kwargs):
        if not isinstance(self, BatchView):
            calls.append(request.path)
        return original(self, request, *args, **kwargs)

    monkeypatch.setattr(APIView, "dispatch", recording)
    return calls


def refused(api, body, dispatched, status=400):
    response = send(api, body)
    assert response.status_code == status, response.content
    assert Category.objects.count() == 0
    assert dispatched == []
    return response.json()


DROP = object()


def one(request: dict) -> dict:
    """A batch of WRITE and a GET changed by ``request`` (``DROP``: leave the member out)."""
    merged = {"id": "x", "method": "GET", "url": "/api/products/"} | request
    return {"requests": [WRITE, {k: v for k, v in merged.items() if v is not DROP}]}


# -- the body ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("[]", "must be a JSON object with a list 'requests'; got a list"),
        ('"requests"', "got a string"),
        ("{", "is not valid JSON"),
        ("", "The request body is empty"),
        ("{}", "has no 'requests'"),
        ('{"requests": {}}', "'requests' must be a list; got an object"),
        ('{"requests": []}', "'requests' is empty"),
        ('{"requests": [], "atomic": true, "extra": 1}', "Unknown member 'extra'"),
        (json.dumps({"requests": [WRITE], "atomic": "yes"}), "'atomic' must be true or false"),
        ("[" * 100 + "]" * 100, "nested too deeply"),
    ],
)
def test_a_body_that_is_not_an_envelope_is_400(api, dispatched, body, message):
    error = refused(api, body, dispatched)

    assert error["error"] == "invalid_envelope"
    assert message in error["message"]


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        ("GET /api/products/", "must be an object; got a string"),
        ({"id": DROP}, "has no 'id'"),
        ({"id": 7}, "'id' must be a string of 1 to 64 letters"),
        ({"id": "a.b"}, "'id' must be a string"),
        ({"id": "x" * 65}, "'id' must be a string"),
        ({"id": "w"}, "the id 'w' is used twice (requests[0] has it too)"),
        ({"params": {}}, "unknown member 'params'"),
        ({"method": "get"}, "the method 'get' must be upper case: 'GET'"),
        ({"method": "Post"}, "must be upper case: 'POST'"),
        ({"method": "HEAD"}, "unknown method 'HEAD'; use one of GET, POST, PUT, PATCH, DELETE"),
        ({"method": "OPTIONS"}, "unknown method 'OPTIONS'"),
        ({"method": None}, "'method' must be one of GET"),
        ({"url": None}, "'url' must be a path"),
        ({"url": "https://evil.example/api/products/"}, "without scheme or host"),
        ({"url": "//evil.example/api/products/"}, "without scheme or host"),
        ({"url": "api/products/"}, "without scheme or host"),
        ({"url": "/admin/"}, "is outside /api/"),
        ({"url": "/api/../admin/"}, "must not have '.' or '..' segments"),
        ({"url": "/api/products/%2e%2e/"}, "must not have '.' or '..' segments"),
        ({"url": "/api/./products/"}, "must not have '.' or '..' segments"),
        ({"url": "/api/products\\..\\"}, "backslash"),
        ({"url": "/api/products/#top"}, "fragment"),
        ({"url": "/api/pr oducts/"}, "printable ASCII without spaces"),
        ({"url": "/api/prödücts/"}, "printable ASCII"),
        ({"url": "/api/nothing-here/"}, "does not match any API view"),
        ({"url": "/api/products/" + "a" * 2000}, "longer than 2000 characters"),
        ({"method": "POST", "body": []}, "'body' must be an object; got a list"),
        ({"method": "POST", "body": "text"}, "'body' must be an object; got a string"),
        ({"body": {"a": 1}}, "a GET request has no body"),
        ({"headers": []}, "'headers' must be an object"),
        ({"headers": {"Authorization": "Token x"}}, "the header 'Authorization' is not allowed"),
        ({"headers": {"Cookie": "a=b"}}, "the header 'Cookie' is not allowed"),
        ({"headers": {"X-Forwarded-For": "1.2.3.4"}}, "is not allowed"),
        ({"headers": {"Prefer": 1}}, "the header Prefer must be printable ASCII text"),
        ({"headers": {"Prefer": "a\nb"}}, "the header Prefer must be printable ASCII text"),
        ({"headers": {"prefer": "a", "Prefer": "b"}}, "the header Prefer is given twice"),
        ({"depends_on": "w"}, "'depends_on' must be a list of ids"),
        ({"depends_on": [0]}, "'depends_on' must list ids (strings)"),
        ({"depends_on": ["nobody"]}, "it depends on 'nobody', which no request of the batch has"),
        ({"depends_on": ["x"]}, "it depends on itself"),
    ],
)
def test_a_bad_request_is_400_naming_it(api, dispatched, request_, message):
    body = {"requests": [WRITE, request_]}
    if isinstance(request_, dict):
        body = one(request_)

    error = refused(api, body, dispatched)

    assert error["error"] == "invalid_envelope"
    assert message in error["message"], error["message"]
    assert error["message"].startswith("requests[1]")
    assert error["request"]["index"] == 1
    if isinstance(request_, dict) and "id" not in request_:
        assert error["request"]["id"] == "x"
        assert error["message"].startswith("requests[1] ('x'): ")


@pytest.mark.parametrize(
    "url",
    [
        "/api/batch/",
        "/api/batch",
        "/api//batch/",
        "/api/BATCH/",
        "/api/%62atch/",
        "/api/%2562atch/",
        "/api/products/?next=/api/batch/",
        "/api/products/?next=%2Fapi%2Fbatch%2F",
        "/api/products/?next=%252Fapi%252F%252Fbatch",
        "/api/products/?format=json&u=/API/./batch",
    ],
)
def test_a_nested_batch_in_any_spelling_is_400(api, dispatched, url):
    error = refused(
        api, one({"method": "POST", "url": url, "body": {"requests": [WRITE]}}), dispatched
    )

    assert "batches cannot be nested" in error["message"]


def test_a_resource_whose_name_starts_like_the_batch_is_not_taken_for_it():
    policy = UrlPolicy(api_prefix="/api/", batch_path="/api/batch/", batch_class=BatchView)

    assert not policy._names_batch("/api/batches/")
    assert policy._names_batch("/api/batch?x")


@pytest.mark.parametrize(
    ("requests", "message", "index"),
    [
        (
            [{"id": "a", "depends_on": ["b"]}, {"id": "b", "depends_on": ["a"]}],
            "its depends_on make a cycle: 'a' -> 'b' -> 'a'",
            0,
        ),
        (
            [
                {"id": "z"},
                {"id": "a", "depends_on": ["z", "c"]},
                {"id": "b", "depends_on": ["a"]},
                {"id": "c", "depends_on": ["b"]},
            ],
            "its depends_on make a cycle: 'a' -> 'c' -> 'b' -> 'a'",
            1,
        ),
        (
            [{"id": "a", "method": "GET", "url": "/api/customers/{b.body.id}/"}, {"id": "b"}],
            "the reference {b.body.id} needs the response of 'b', which this request does not "
            "depend on; add 'b' to its depends_on",
            0,
        ),
        (
            [{"id": "a", "method": "POST", "url": "/api/categories/", "body": {"n": "{a.body}"}}],
            "the reference {a.body} refers to the request itself",
            0,
        ),
        (
            [{"id": "a", "method": "POST", "url": "/api/categories/", "body": {"n": "{q.body.x}"}}],
            "the reference {q.body.x} names 'q', which no request of the batch has",
            0,
        ),
    ],
)
def test_cycles_and_references_out_of_order_are_400(api, dispatched, requests, message, index):
    base = {"method": "GET", "url": "/api/products/"}
    body = {"requests": [WRITE | {"id": "w"}, *({**base, **r} for r in requests)]}

    error = refused(api, body, dispatched)

    assert message in error["message"]
    assert error["request"]["index"] == index + 1


def test_more_requests_than_the_limit_is_413(api, dispatched, settings):
    settings.BULKOPS = {"MAX_BATCH_REQUESTS": 3}
    body = {
        "requests": [WRITE, *({"id": f"r{i}", "method": "GET", "url": "/api/"} for i in range(3))]
    }

    error = refused(api, body, dispatched, status=413)

    assert error == {
        "error": "batch_too_large",
        "message": "Maximum 3 requests per batch; received 4",
        "limit": 3,
        "received": 4,
    }


def test_a_1000_long_chain_is_checked_without_recursion(api, dispatched, settings):
    settings.BULKOPS = {"MAX_BATCH_REQUESTS": 1001}
    chain = [{"id": "r0", "method": "GET", "url": "/api/products/", "depends_on": ["r999"]}]
    chain += [
        {"id": f"r{i}", "method": "GET", "url": "/api/products/", "depends_on": [f"r{i - 1}"]}
        for i in range(1, 1000)
    ]
    default = {"requests": [WRITE, *chain]}
    settings.BULKOPS = {}

    assert send(api, default).status_code == 413  # 50 at most by default
    settings.BULKOPS = {"MAX_BATCH_REQUESTS": 1001}
    error = refused(api, default, dispatched)

    assert error["request"] == {"index": 1, "id": "r0"}
    assert "its depends_on make a cycle: 'r0' -> 'r999' -> 'r998'" in error["message"]


def test_a_long_chain_is_ordered_without_recursion(monkeypatch):
    monkeypatch.setattr(sys, "getrecursionlimit", lambda: 100)  # a reminder: no recursion here
    count = 5000
    requests = [
        {
            "id": f"r{i}",
            "method": "POST",
            "url": "/api/categories/",
            "body": {"name": f"{{r{i + 1}.body.name}}"} if i < count - 1 else {"name": "x"},
            **({"depends_on": [f"r{i + 1}"]} if i < count - 1 else {}),
        }
        for i in range(count)
    ]
    policy = UrlPolicy(api_prefix="/api/", batch_path="/api/batch/", batch_class=BatchView)

    envelope = parse_batch_envelope(
        json.dumps({"requests": requests}).encode(), policy=policy, max_requests=count
    )

    assert envelope.order == list(range(count - 1, -1, -1))
    assert envelope.requests[0].depends_on == (1,)


def test_a_10_mb_body_is_413(api, dispatched):
    big = json.dumps(
        one({"method": "POST", "url": "/api/categories/", "body": {"name": "x" * 10_000_000}})
    )

    error = refused(api, big, dispatched, status=413)

    assert error["error"] == "batch_too_large"
    assert error["limit"] == 5 * 1024 * 1024
    assert error["received"] >= 10_000_000


def test_a_body_that_is_not_json_is_415(api, dispatched):
    response = api.post(URL, data="requests=1", content_type="application/x-www-form-urlencoded")

    assert response.status_code == 415
    assert dispatched == []


def test_an_anonymous_batch_is_401(client, dispatched):
    response = send(client, {"requests": [WRITE]})

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Token"
    assert dispatched == []
    assert Category.objects.count() == 0


def test_only_post_is_allowed(api):
    assert api.get(URL).status_code == 405


def test_invalid_envelope_is_an_exception_with_the_request_named():
    policy = UrlPolicy(api_prefix="/api/", batch_path="/api/batch/", batch_class=BatchView)
    body = json.dumps({"requests": [{"id": "a", "method": "TRACE", "url": "/api/"}]}).encode()

    with pytest.raises(InvalidEnvelope) as caught:
        parse_batch_envelope(body, policy=policy, max_requests=50)

    assert caught.value.extra == {"request": {"index": 0, "id": "a"}}


# -- any input: a checked envelope or a 400/413, never another exception ------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)
IDS = st.sampled_from(["a", "b", "c", "A-1", "", "a.b", 3])
URLS = st.sampled_from(
    [
        "/api/products/",
        "/api/products/{a.body.id}/",
        "/api/customers/?q={b.body.x}",
        "/api/batch/",
        "/api/%2e%2e/",
        "//x/api/",
        "/api/\u00e9/",
        "/api/products/1/",
        "/api/products/bulk/",
        "/api/",
        "/admin/",
        "",
    ]
)
REQUESTS = st.fixed_dictionaries(
    {"id": IDS, "method": st.sampled_from(["GET", "POST", "get", "TRACE", 1]), "url": URLS},
    optional={
        "body": st.none()
        | JSON
        | st.fixed_dictionaries({"name": st.sampled_from(["{a.body}", "x"])}),
        "headers": st.none() | st.dictionaries(st.sampled_from(["Prefer", "If-Match", "X"]), JSON),
        "depends_on": st.none() | st.lists(IDS, max_size=3) | JSON,
    },
)
ENVELOPES = JSON | st.fixed_dictionaries(
    {"requests": st.lists(REQUESTS, max_size=5) | JSON}, optional={"atomic": JSON}
)


@given(ENVELOPES)
@hypothesis_settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
def test_any_input_is_an_envelope_or_a_clear_refusal(data):
    policy = UrlPolicy(api_prefix="/api/", batch_path="/api/batch/", batch_class=BatchView)
    try:
        envelope = parse_batch_envelope(json.dumps(data).encode(), policy=policy, max_requests=4)
    except (InvalidEnvelope, BatchTooLarge) as exc:
        assert exc.message
        return
    assert sorted(envelope.order) == list(range(len(envelope.requests)))
    for sub in envelope.requests:
        assert all(d < len(envelope.requests) for d in sub.depends_on)
        assert sub.target is not None or sub.has_references
