"""The job API (CONTRACT §3 "Jobs"): list, detail, results, errors files, cancel, retry,
and who may see what. Jobs are recorded as the stages leave them (``record_job``)."""

# ruff: noqa: F811 - the fixtures imported from apihelpers are parameters here

import csv
import io
import uuid

import pytest
from openpyxl import load_workbook

from bulkops.jobs.models import BulkChunk, BulkJob
from bulkops.results import CREATED, DELETED, ERROR, UPDATED
from tests.factories import ProductFactory
from tests.jobs.apihelpers import client_for, make_user, outcome, record_job  # noqa: F401

pytestmark = pytest.mark.django_db

SERIALIZER = "project.catalog.serializers.ProductSerializer"
NEGATIVE = "Ensure this value is greater than or equal to 0."
DETAIL_FIELDS = {
    "id",
    "status",
    "model",
    "mode",
    "atomic",
    "source",
    "dry_run",
    "progress",
    "created_at",
    "started_at",
    "finished_at",
    "results_url",
    "errors_url",
}
PROGRESS_FIELDS = {"total", "processed", "succeeded", "failed", "percent", "stage", "eta_seconds"}


@pytest.fixture
def owner(make_user):
    return make_user("add_product")


@pytest.fixture
def api(owner, client_for):
    return client_for(owner)


def small_job(user, **kwargs):
    """Two chunks: created, error, created | updated, created."""
    products = [ProductFactory(sku=f"J-{i}") for i in range(4)]
    chunks = [
        [
            outcome(CREATED, 0, ref="a", id=products[0].pk),
            outcome(
                ERROR,
                1,
                ref="b",
                errors={"price": ["Ensure this value is greater than or equal to 0."]},
                values={"sku": "J-X", "name": "=HYPERLINK(1)", "price": "-1"},
            ),
            outcome(CREATED, 2, id=products[1].pk),
        ],
        [outcome(UPDATED, 3, id=products[2].pk), outcome(CREATED, 4, id=products[3].pk)],
    ]
    kwargs.setdefault("serializer", SERIALIZER)
    return record_job(user=user, chunks=chunks, status=BulkJob.PARTIAL, **kwargs), products


# -- list and detail --------------------------------------------------------------------


def test_a_user_lists_only_their_own_jobs(api, owner, make_user):
    mine = record_job(user=owner, chunks=[[outcome(CREATED, 0, id=1)]])
    record_job(user=make_user(), chunks=[[outcome(CREATED, 0, id=2)]])
    response = api.get("/api/bulk-jobs/")
    assert response.status_code == 200
    assert response.data["count"] == 1
    assert [job["id"] for job in response.data["results"]] == [str(mine.pk)]


def test_a_superuser_lists_every_job(client_for, owner, make_user):
    record_job(user=owner, chunks=[[outcome(CREATED, 0, id=1)]])
    record_job(user=make_user(), chunks=[[outcome(CREATED, 0, id=2)]])
    record_job(user=None, chunks=[[outcome(CREATED, 0, id=3)]], source=BulkJob.SOURCE_COMMAND)
    response = client_for(make_user(superuser=True)).get("/api/bulk-jobs/")
    assert response.data["count"] == 3


def test_the_list_is_paginated_newest_first_and_filters_by_status(api, owner):
    jobs = [record_job(user=owner, chunks=[[outcome(CREATED, 0, id=i)]]) for i in range(3)]
    failed = record_job(user=owner, chunks=[[outcome(ERROR, 0, errors={"x": ["y"]})]])
    failed.status = BulkJob.FAILED
    failed.save()
    page = api.get("/api/bulk-jobs/", {"page_size": 2})
    assert page.data["count"] == 4
    assert [j["id"] for j in page.data["results"]] == [str(failed.pk), str(jobs[2].pk)]
    assert page.data["next"].endswith("page=2&page_size=2") or "page=2" in page.data["next"]
    second = api.get(page.data["next"])
    assert [j["id"] for j in second.data["results"]] == [str(jobs[1].pk), str(jobs[0].pk)]
    only_failed = api.get("/api/bulk-jobs/", {"status": "failed"})
    assert [j["id"] for j in only_failed.data["results"]] == [str(failed.pk)]


def test_anonymous_requests_are_refused(client_for, owner):
    job = record_job(user=owner, chunks=[[outcome(CREATED, 0, id=1)]])
    assert client_for().get("/api/bulk-jobs/").status_code == 401
    assert client_for().get(f"/api/bulk-jobs/{job.pk}/").status_code == 401


def test_the_detail_has_exactly_the_contract_fields(api, owner):
    job, _ = small_job(owner)
    response = api.get(f"/api/bulk-jobs/{job.pk}/")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == DETAIL_FIELDS
    assert set(body["progress"]) == PROGRESS_FIELDS
    assert body["id"] == str(job.pk)
    assert body["status"] == "partial"
    assert body["model"] == "catalog.product"
    assert (body["mode"], body["atomic"], body["source"], body["dry_run"]) == (
        "create",
        "none",
        "api",
        False,
    )
    assert body["progress"] == {
        "total": 5,
        "processed": 5,
        "succeeded": 4,
        "failed": 1,
        "percent": 100.0,
        "stage": "done",
        "eta_seconds": 0,
    }
    assert body["results_url"] == f"/api/bulk-jobs/{job.pk}/results/"
    assert body["errors_url"] == f"/api/bulk-jobs/{job.pk}/errors.csv"
    assert body["finished_at"] is not None


def test_the_progress_of_a_running_job(api, owner):
    job, _ = small_job(owner)
    job.status, job.stage, job.finished_at = BulkJob.RUNNING, BulkJob.STAGE_WRITE, None
    job.rows_written = 3
    job.save()
    progress = api.get(f"/api/bulk-jobs/{job.pk}/").json()["progress"]
    assert progress["stage"] == "write"
    assert progress["processed"] == 3
    assert progress["percent"] == 60.0


@pytest.mark.parametrize(
    "job_id", ["not-a-uuid", "123", str(uuid.uuid4()), "00000000-0000-0000-0000-00000000000g"]
)
def test_bad_or_unknown_ids_are_404(api, job_id):
    for path in ("/", "/results/", "/errors.csv", "/errors.xlsx"):
        assert api.get(f"/api/bulk-jobs/{job_id}{path}").status_code == 404, path
    assert api.post(f"/api/bulk-jobs/{job_id}/cancel/").status_code == 404


def test_another_users_job_is_404_everywhere(client_for, owner, make_user):
    job, _ = small_job(owner)
    job.status = BulkJob.RUNNING
    job.finished_at = None
    job.save()
    other = client_for(make_user("add_product"))
    for path in ("/", "/results/", "/results/?status=error", "/errors.csv", "/errors.xlsx"):
        assert other.get(f"/api/bulk-jobs/{job.pk}{path}").status_code == 404, path
    assert other.post(f"/api/bulk-jobs/{job.pk}/cancel/").status_code == 404
    assert other.post(f"/api/bulk-jobs/{job.pk}/retry/").status_code == 404
    job.refresh_from_db()
    assert job.status == BulkJob.RUNNING


def test_a_superuser_sees_another_users_job(client_for, owner, make_user):
    job, _ = small_job(owner)
    boss = client_for(make_user(superuser=True))
    assert boss.get(f"/api/bulk-jobs/{job.pk}/").status_code == 200
    assert boss.get(f"/api/bulk-jobs/{job.pk}/results/").data["count"] == 5


# -- results ----------------------------------------------------------------------------


def test_results_are_every_row_in_order_with_the_sync_item_shape(api, owner):
    job, products = small_job(owner)
    response = api.get(f"/api/bulk-jobs/{job.pk}/results/")
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 5
    assert body["next"] is None and body["previous"] is None
    results = body["results"]
    assert [(r["index"], r["status"]) for r in results] == [
        (0, "created"),
        (1, "error"),
        (2, "created"),
        (3, "updated"),
        (4, "created"),
    ]
    first = results[0]
    assert first["ref"] == "a"
    assert first["id"] == products[0].pk
    assert first["data"] == {
        "id": products[0].pk,
        "sku": "J-0",
        "name": products[0].name,
        "category": products[0].category.name,
        "price": "9.99",
        "quantity": 5,
        "active": True,
        "released": None,
    }
    assert results[1] == {
        "index": 1,
        "ref": "b",
        "status": "error",
        "errors": {"price": ["Ensure this value is greater than or equal to 0."]},
    }
    assert "row" not in first  # an API job has no spreadsheet rows


@pytest.mark.parametrize(
    ("status", "indexes"),
    [("created", [0, 2, 4]), ("updated", [3]), ("error", [1]), ("deleted", [])],
)
def test_results_filter_by_status(api, owner, status, indexes):
    job, _ = small_job(owner)
    body = api.get(f"/api/bulk-jobs/{job.pk}/results/", {"status": status}).json()
    assert body["count"] == len(indexes)
    assert [r["index"] for r in body["results"]] == indexes
    assert {r["status"] for r in body["results"]} <= {status}


def test_results_are_paginated(api, owner):
    rows = [outcome(CREATED, i, id=i + 1) for i in range(7)]
    job = record_job(user=owner, chunks=[rows[:3], rows[3:6], rows[6:]])
    first = api.get(f"/api/bulk-jobs/{job.pk}/results/", {"page_size": 3}).json()
    assert first["count"] == 7
    assert [r["index"] for r in first["results"]] == [0, 1, 2]
    second = api.get(first["next"]).json()
    assert [r["index"] for r in second["results"]] == [3, 4, 5]
    third = api.get(second["next"]).json()
    assert [r["index"] for r in third["results"]] == [6]
    assert third["next"] is None
    assert "page=2" in third["previous"]
    back = api.get(second["previous"]).json()
    assert [r["index"] for r in back["results"]] == [0, 1, 2]


def test_results_of_a_file_job_carry_the_spreadsheet_row(api, owner):
    products = [ProductFactory() for _ in range(2)]
    job = record_job(
        user=owner,
        source=BulkJob.SOURCE_COMMAND,
        file_columns={"SKU": "sku", "Name": "name"},
        chunks=[
            [
                outcome(CREATED, 0, row=2, id=products[0].pk),
                outcome(ERROR, 1, row=3, errors={"sku": ["This field is required."]}),
                outcome(CREATED, 2, row=5, id=products[1].pk),
            ]
        ],
        serializer=SERIALIZER,
    )
    results = api.get(f"/api/bulk-jobs/{job.pk}/results/").json()["results"]
    assert [(r["index"], r["row"], r["status"]) for r in results] == [
        (0, 2, "created"),
        (1, 3, "error"),
        (2, 5, "created"),
    ]


def test_a_cancelled_job_reports_its_unprocessed_rows(api, owner):
    done = [outcome(CREATED, 0, id=1), outcome(CREATED, 1, id=2)]
    never = [
        outcome("unprocessed", 2),
        outcome(ERROR, 3, errors={"name": ["This field is required."]}),
    ]
    job = record_job(
        user=owner, chunks=[done, never], written=1, status=BulkJob.CANCELLED, serializer=""
    )
    url = f"/api/bulk-jobs/{job.pk}/results/"
    assert api.get(url).json()["count"] == 4
    unprocessed = api.get(url, {"status": "unprocessed"}).json()
    assert unprocessed["count"] == 1
    assert unprocessed["results"] == [{"index": 2, "status": "unprocessed"}]
    errors = api.get(url, {"status": "error"}).json()
    assert [r["index"] for r in errors["results"]] == [3]
    detail = api.get(f"/api/bulk-jobs/{job.pk}/").json()
    assert detail["status"] == "cancelled"


def test_results_of_a_running_job_hold_written_rows_and_errors(api, owner):
    job = record_job(
        user=owner,
        status=BulkJob.RUNNING,
        written=1,
        chunks=[
            [outcome(CREATED, 0, id=1), outcome(CREATED, 1, id=2)],
            [outcome(ERROR, 2, errors={"sku": ["Required."]}), outcome("unprocessed", 3)],
        ],
    )
    body = api.get(f"/api/bulk-jobs/{job.pk}/results/").json()
    assert [(r["index"], r["status"]) for r in body["results"]] == [
        (0, "created"),
        (1, "created"),
        (2, "error"),
    ]
    assert body["count"] == 3


def test_deleted_rows_have_an_id_and_no_data(api, owner):
    job = record_job(
        user=owner, mode="delete", chunks=[[outcome(DELETED, 0, id=41)]], serializer=SERIALIZER
    )
    assert api.get(f"/api/bulk-jobs/{job.pk}/results/").json()["results"] == [
        {"index": 0, "status": "deleted", "id": 41}
    ]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"status": "bogus"}, "Unknown status 'bogus'; use one of created, updated"),
        ({"page_size": "0"}, "'page_size' must be a whole number from 1 to 1000"),
        ({"page_size": "abc"}, "'page_size' must be a whole number"),
        ({"page": "-1"}, "'page' must be a whole number from 1 or more"),
    ],
)
def test_bad_result_queries_are_400(api, owner, query, message):
    job, _ = small_job(owner)
    response = api.get(f"/api/bulk-jobs/{job.pk}/results/", query)
    assert response.status_code == 400
    assert message in response.json()["message"]


def test_a_page_past_the_end_is_404(api, owner):
    job, _ = small_job(owner)
    assert api.get(f"/api/bulk-jobs/{job.pk}/results/", {"page": 2}).status_code == 404


# -- errors files -----------------------------------------------------------------------


def test_errors_csv_has_the_failed_rows_as_uploaded_and_neutralised_formulas(api, owner):
    job = record_job(
        user=owner,
        source=BulkJob.SOURCE_ADMIN,
        file_columns={"SKU": "sku", "Product name": "name", "Price": "price"},
        chunks=[
            [
                outcome(CREATED, 0, row=2, id=1),
                outcome(
                    ERROR,
                    1,
                    row=3,
                    values={"sku": "@SUM(A1)", "name": "=cmd|' /C calc'!A0", "price": "-5"},
                    errors={"price": ["Ensure this value is greater than or equal to 0."]},
                ),
                outcome(
                    ERROR,
                    2,
                    row=4,
                    values={"sku": "B-1", "name": "ok", "price": "x"},
                    errors={"price": ["A valid number is required."], "non_field_errors": ["+1"]},
                ),
            ]
        ],
    )
    response = api.get(f"/api/bulk-jobs/{job.pk}/errors.csv")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert f"bulk-job-{job.pk}-errors.csv" in response["Content-Disposition"]
    content = b"".join(response.streaming_content)
    assert content.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(content.decode("utf-8-sig"))))
    assert rows == [
        ["SKU", "Product name", "Price", "row", "errors"],
        [
            "'@SUM(A1)",
            "'=cmd|' /C calc'!A0",
            "'-5",
            "3",
            "price: Ensure this value is greater than or equal to 0.",
        ],
        ["B-1", "ok", "x", "4", "price: A valid number is required.; +1"],
    ]


def test_errors_csv_of_an_api_job_uses_the_members_sent(api, owner):
    job, _ = small_job(owner)
    response = api.get(f"/api/bulk-jobs/{job.pk}/errors.csv")
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode("utf-8-sig"))))
    assert rows == [
        ["sku", "name", "price", "row", "errors"],
        ["J-X", "'=HYPERLINK(1)", "'-1", "1", f"price: {NEGATIVE}"],
    ]


def test_errors_xlsx_is_a_workbook_with_neutralised_formulas(api, owner):
    job, _ = small_job(owner)
    response = api.get(f"/api/bulk-jobs/{job.pk}/errors.xlsx")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.openxmlformats")
    book = load_workbook(io.BytesIO(b"".join(response.streaming_content)))
    sheet = book.active
    rows = [list(row) for row in sheet.iter_rows(values_only=True)]
    assert rows[0] == ["sku", "name", "price", "row", "errors"]
    assert rows[1][:4] == ["J-X", "'=HYPERLINK(1)", "'-1", 1]
    assert sheet.cell(row=2, column=2).data_type == "s"  # text, not a formula


def test_an_errors_file_of_a_job_without_failures_is_the_header_only(api, owner):
    job = record_job(user=owner, chunks=[[outcome(CREATED, 0, id=1)]])
    content = b"".join(api.get(f"/api/bulk-jobs/{job.pk}/errors.csv").streaming_content)
    assert content.decode("utf-8-sig").splitlines() == ["row,errors"]


def test_other_error_file_formats_are_404(api, owner):
    job, _ = small_job(owner)
    assert api.get(f"/api/bulk-jobs/{job.pk}/errors.json").status_code == 404


# -- cancel and retry ---------------------------------------------------------------------


def running_job(owner):
    return record_job(
        user=owner,
        status=BulkJob.RUNNING,
        written=1,
        chunks=[[outcome(CREATED, 0, id=1)], [outcome("unprocessed", 1)]],
    )


def test_cancel_stops_a_running_job(api, owner):
    job = running_job(owner)
    response = api.post(f"/api/bulk-jobs/{job.pk}/cancel/")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert set(response.json()) == DETAIL_FIELDS
    job.refresh_from_db()
    assert job.status == BulkJob.CANCELLED
    assert job.unprocessed == 1
    # Again: nothing changes.
    assert api.post(f"/api/bulk-jobs/{job.pk}/cancel/").json()["status"] == "cancelled"


def test_cancel_of_an_ended_job_is_409(api, owner):
    job, _ = small_job(owner)
    response = api.post(f"/api/bulk-jobs/{job.pk}/cancel/")
    assert response.status_code == 409
    assert response.json() == {
        "error": "job_state",
        "message": "The job already ended (partial); there is nothing to cancel.",
        "status": "partial",
    }


def test_cancel_and_retry_take_only_post(api, owner):
    job = running_job(owner)
    assert api.get(f"/api/bulk-jobs/{job.pk}/cancel/").status_code == 405
    assert api.get(f"/api/bulk-jobs/{job.pk}/retry/").status_code == 405


def test_retry_queues_the_failed_chunks_again(api, owner):
    job = record_job(
        user=owner,
        status=BulkJob.PARTIAL,
        written=1,
        chunks=[[outcome(CREATED, 0, id=1)], [outcome("unprocessed", 1)]],
    )
    job.chunks.filter(index=1).update(
        state=BulkChunk.FAILED, failed_stage=BulkJob.STAGE_WRITE, error="OperationalError"
    )
    job.chunks_failed = 1
    job.save()
    response = api.post(f"/api/bulk-jobs/{job.pk}/retry/")
    assert response.status_code == 200
    assert response.json()["status"] == "queued"
    assert job.chunks.get(index=1).state == BulkChunk.VALIDATED


def test_retry_of_a_job_without_failed_chunks_is_409(api, owner):
    job, _ = small_job(owner)
    response = api.post(f"/api/bulk-jobs/{job.pk}/retry/")
    assert response.status_code == 409
    assert response.json()["error"] == "job_state"
    assert "no failed chunks to retry" in response.json()["message"]


# -- OpenAPI ----------------------------------------------------------------------------


def test_the_job_api_is_described_in_the_schema(api):
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    paths = schema["paths"]
    assert set(paths["/api/bulk-jobs/"]) >= {"get"}
    assert "/api/bulk-jobs/{id}/" in paths
    assert set(paths["/api/bulk-jobs/{id}/results/"]["get"]["responses"]) == {"200", "400", "404"}
    errors = paths["/api/bulk-jobs/{id}/errors.{fmt}"]["get"]
    assert set(errors["responses"]["200"]["content"]) == {
        "text/csv",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    }
    assert set(paths["/api/bulk-jobs/{id}/cancel/"]["post"]["responses"]) == {"200", "404", "409"}
    components = schema["components"]["schemas"]
    assert set(components["BulkJob"]["properties"]) == DETAIL_FIELDS
    assert set(components["BulkJobProgress"]["properties"]) == PROGRESS_FIELDS
    statuses = components["BulkJobRowStatusEnum"]["enum"]
    assert statuses == ["created", "updated", "deleted", "error", "rolled_back", "unprocessed"]
    accepted = paths["/api/products/bulk/"]["post"]["responses"]["202"]
    assert accepted["content"]["application/json"]["schema"]["$ref"].endswith("BulkJobAccepted")
    assert "Location" in accepted["headers"]
