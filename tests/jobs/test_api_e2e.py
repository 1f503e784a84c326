"""The job surfaces on jobs that really run: asynchronous bulk requests, ``bulk_import
--async [--wait]`` and ``bulk_jobs watch`` compared with their synchronous twins, the
e-mail when a job ends; in this process (``in_process``), and on real RQ workers
(PostgreSQL), the CLI as a user runs it, a cancel through the API, and the queue limit."""

# ruff: noqa: F811 - the fixtures imported from apihelpers are parameters here

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import uuid

import pytest
from django.core.management import call_command
from django.db import connection

from bulkops.jobs.models import BulkJob
from project.catalog.models import Product
from tests.jobs.apihelpers import client_for, make_user  # noqa: F401
from tests.jobs.conftest import FAST_HEALING, ROOT, needs_postgres, wait_for, wait_job
from tests.jobs.data import PRODUCT_HEADER, product_rows, write_csv

PRODUCTS = "/api/products/bulk/"
NEGATIVE = "Ensure this value is greater than or equal to 0."


@pytest.fixture
def ann(make_user):
    return make_user("add_product", "change_product", email="ann@example.com")


@pytest.fixture
def api(ann, client_for):
    return client_for(ann)


def post(client, body, method="post", **headers):
    send = getattr(client, method)
    return send(PRODUCTS, data=json.dumps(body), content_type="application/json", **headers)


def items():
    """Products of which four fail, each in its own way, two with a _ref."""
    return [
        {"sku": "A-1", "name": "One", "category": "Tools", "price": "1.00", "_ref": "first"},
        {"sku": "A-2", "name": "Two", "category": "Tools", "price": "-2"},
        {"sku": "A-3", "name": "Three", "category": "Nowhere", "price": "3"},
        {"sku": "A-4", "name": "Four", "category": "Tools", "price": "4", "_ref": "fourth"},
        {"sku": "A-4", "name": "Four again", "category": "Tools", "price": "4"},
        {"sku": "A-6", "category": "Tools", "price": "6"},
        {"sku": "A-7", "name": "Seven", "category": "Tools", "price": "7", "quantity": 3},
    ]


def all_results(client, job_id, **query):
    body = client.get(f"/api/bulk-jobs/{job_id}/results/", {"page_size": 1000, **query}).json()
    assert body["next"] is None
    return body["results"]


def without_ids(results):
    out = []
    for result in results:
        result = {k: v for k, v in result.items() if k != "id"}
        if "data" in result:
            result["data"] = {k: v for k, v in result["data"].items() if k != "id"}
        out.append(result)
    return out


# -- in this process ----------------------------------------------------------------------


@pytest.mark.parametrize("atomic", ["none", "chunk", "all"])
@pytest.mark.usefixtures("in_process", "media_root")
@pytest.mark.django_db(transaction=True)
def test_an_async_batch_has_the_results_of_the_same_sync_batch(api, tools, atomic, mailoutbox):
    body = {"items": items(), "atomic": atomic, "chunk_size": 3}
    response = post(api, {**body, "async": True})
    assert response.status_code == 202
    job_id = response.json()["job_id"]
    status = api.get(response["Location"]).json()
    job_results = all_results(api, job_id)
    Product.objects.all().delete()
    sync = post(api, body).json()
    assert status["status"] == sync["status"]
    assert without_ids(job_results) == without_ids(sync["results"])
    assert status["progress"]["succeeded"] == sync["summary"]["succeeded"]
    assert status["progress"]["failed"] == sync["summary"]["failed"]
    if atomic == "none":
        assert [r["status"] for r in job_results].count("created") == 2
        assert job_results[0]["ref"] == "first"
        assert job_results[0]["data"]["sku"] == "A-1"
        assert job_results[1]["errors"] == {"price": [NEGATIVE]}
    # The user hears of it once.
    assert [m.to for m in mailoutbox] == [["ann@example.com"]]
    assert f"/api/bulk-jobs/{job_id}/" in mailoutbox[0].body


@pytest.mark.usefixtures("in_process", "media_root")
@pytest.mark.django_db(transaction=True)
def test_async_updates_report_the_objects_as_the_single_endpoint_shows_them(api, tools):
    post(api, {"items": items()[:1]})
    product = Product.objects.get(sku="A-1")
    response = post(
        api, {"items": [{"sku": "A-1", "name": "Renamed"}], "async": True}, method="patch"
    )
    results = all_results(api, response.json()["job_id"])
    single = api.get(f"/api/products/{product.pk}/").json()
    assert results == [{"index": 0, "status": "updated", "id": product.pk, "data": single}]
    assert single["name"] == "Renamed"
    errors = api.get(f"/api/bulk-jobs/{response.json()['job_id']}/errors.csv")
    assert b"".join(errors.streaming_content).decode("utf-8-sig").splitlines() == ["row,errors"]


@pytest.mark.usefixtures("in_process", "media_root")
@pytest.mark.django_db(transaction=True)
def test_the_errors_file_of_an_async_batch(api, tools):
    job_id = post(api, {"items": items(), "async": True}).json()["job_id"]
    response = api.get(f"/api/bulk-jobs/{job_id}/errors.csv")
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode("utf-8-sig"))))
    assert rows[0] == ["sku", "name", "category", "price", "row", "errors"]
    assert [row[-2] for row in rows[1:]] == ["1", "2", "3", "4", "5"]
    assert rows[1][:4] == ["A-2", "Two", "Tools", "'-2"]
    assert rows[1][-1] == f"price: {NEGATIVE}"


def run_command(name, *args):
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command(name, *args, stdout=out, stderr=err)
        code = 0
    except SystemExit as exc:
        code = exc.code
    return code, out.getvalue(), err.getvalue()


def products_file(tmp_path, failures=True):
    rows = product_rows(25)
    if failures:
        rows[3][3] = "-1"
        rows[14][0] = rows[2][0]
        rows[20][3] = "=1+2"  # a formula, neutralised in the errors file
    return str(write_csv(tmp_path / "products.csv", PRODUCT_HEADER, rows))


@pytest.mark.usefixtures("in_process", "media_root")
@pytest.mark.django_db(transaction=True)
def test_bulk_import_async_prints_the_job_id_alone_on_the_last_line(tmp_path, tools, ann):
    code, out, err = run_command(
        "bulk_import", "catalog.Product", products_file(tmp_path), "--async", "--user", ann.username
    )
    assert (code, err) == (0, "")
    job = BulkJob.objects.get(pk=uuid.UUID(out.splitlines()[-1]))
    assert out.splitlines()[-1] == str(job.pk)
    assert (job.source, job.user, job.filename) == ("command", ann, "products.csv")
    assert job.status == BulkJob.PARTIAL  # in process: done before the command returned
    code, out, _ = run_command(
        "bulk_import", "catalog.Product", products_file(tmp_path), "--async", "-v", "0"
    )
    assert out == f"{BulkJob.objects.latest('created_at').pk}\n"


@pytest.mark.parametrize("atomic", ["none", "all"])
@pytest.mark.usefixtures("in_process", "media_root")
@pytest.mark.django_db(transaction=True)
def test_bulk_import_async_wait_reports_as_the_sync_import(tmp_path, tools, atomic):
    path = products_file(tmp_path)
    common = ["catalog.Product", path, "--dry-run", "--chunk-size", "10", "--atomic", atomic]
    sync = run_command("bulk_import", *common, "-e", str(tmp_path / "sync.csv"))
    waited = run_command(
        "bulk_import", *common, "--async", "--wait", "-e", str(tmp_path / "job.csv")
    )
    assert sync[0] == waited[0] == 1
    assert waited[2] == ""
    sync_lines = sync[1].splitlines()
    job_lines = waited[1].splitlines()
    job_id = BulkJob.objects.get().pk
    assert job_lines[0].startswith(f"Job {job_id} queued; waiting for it to end")
    # The summary, without its timing, the failed rows and the advice are the sync ones.
    assert job_lines[1].split(" of 25 rows")[0] == sync_lines[1].split(" of 25 rows")[0]
    assert job_lines[2:] == [line.replace("sync.csv", "job.csv") for line in sync_lines[2:]]
    assert (tmp_path / "job.csv").read_bytes() == (tmp_path / "sync.csv").read_bytes()
    assert Product.objects.count() == 0


@pytest.mark.usefixtures("in_process", "media_root")
@pytest.mark.django_db(transaction=True)
def test_bulk_import_async_wait_exits_0_when_every_row_succeeded(tmp_path, tools):
    code, out, err = run_command(
        "bulk_import",
        "catalog.Product",
        products_file(tmp_path, failures=False),
        "--async",
        "--wait",
    )
    assert (code, err) == (0, "")
    assert out.splitlines()[1].startswith("Created 25, updated 0, deleted 0, failed 0")
    assert Product.objects.count() == 25


@pytest.mark.usefixtures("in_process", "media_root")
@pytest.mark.django_db(transaction=True)
def test_bulk_import_async_wait_of_an_unusable_file_exits_2_as_the_sync_import(tmp_path, tools):
    path = str(write_csv(tmp_path / "p.csv", ["sku", "price"], [["X-1", "1"]]))
    sync = run_command("bulk_import", "catalog.Product", path)
    waited = run_command("bulk_import", "catalog.Product", path, "--wait")  # --wait: a job
    assert sync[0] == waited[0] == 2
    assert waited[2] == sync[2]
    assert BulkJob.objects.get().status == BulkJob.FAILED


@pytest.mark.usefixtures("in_process", "media_root")
@pytest.mark.django_db(transaction=True)
def test_bulk_jobs_watch_and_show_of_a_job_that_ran(tmp_path, tools):
    code, out, _ = run_command("bulk_import", "catalog.Product", products_file(tmp_path), "--async")
    job_id = out.splitlines()[-1]
    code, out, err = run_command("bulk_jobs", "watch", job_id)
    assert (code, err) == (1, "")
    assert out.splitlines()[0] == f"Job {job_id} partial."
    assert out.splitlines()[1].startswith("Created 21, updated 0, deleted 0, failed 4")
    code, out, _ = run_command("bulk_jobs", "show", job_id[:8])
    assert "    row 5: price: Ensure this value is greater than or equal to 0." in out


# -- on real workers ----------------------------------------------------------------------


def manage(rq_queue, settings, *args, timeout=90):
    """``manage.py *args`` as a user runs it, against the test database and queue."""
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.jobs.worker_settings",
        "BULKOPS_TEST_DB_NAME": db["NAME"],
        "BULKOPS_TEST_SETTINGS": json.dumps({**settings.BULKOPS, "QUEUE": rq_queue}),
        "BULKOPS_TEST_MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "BULKOPS_TEST_QUEUE": rq_queue,
        "PYTHONPATH": str(ROOT),
    }
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def fast(settings):
    settings.BULKOPS = {**settings.BULKOPS, **FAST_HEALING}


@needs_postgres
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_an_async_batch_on_a_worker_and_its_replay(api, tools, start_worker, fast):
    start_worker()
    body = {"items": items(), "async": True}
    first = post(api, body, HTTP_IDEMPOTENCY_KEY="batch-1")
    assert first.status_code == 202
    job = wait_job(first.json()["job_id"], timeout=60)
    assert job.status == BulkJob.PARTIAL
    replay = post(api, body, HTTP_IDEMPOTENCY_KEY="batch-1")
    assert replay.status_code == 202
    assert replay.json() == first.json()
    assert replay["Location"] == first["Location"] == f"/api/bulk-jobs/{job.pk}/"
    assert BulkJob.objects.count() == 1
    results = all_results(api, job.pk)
    assert [r["status"] for r in results] == ["created", *["error"] * 5, "created"]
    assert [r.get("ref") for r in results][:4] == ["first", None, None, "fourth"]
    assert Product.objects.count() == 2


@needs_postgres
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_cli_with_a_worker(tmp_path, tools, start_worker, rq_queue, settings, fast):
    path = products_file(tmp_path)
    queued = manage(rq_queue, settings, "bulk_import", "catalog.Product", path, "--async")
    assert queued.returncode == 0, queued.stderr
    job_id = queued.stdout.splitlines()[-1]
    assert uuid.UUID(job_id)
    assert "No RQ worker listens on the queue" in queued.stderr
    start_worker()
    watched = manage(rq_queue, settings, "bulk_jobs", "watch", job_id)
    assert watched.returncode == 1, watched.stderr
    assert watched.stdout.splitlines()[0] == f"Job {job_id} partial."
    waited = manage(
        rq_queue,
        settings,
        "bulk_import",
        "catalog.Product",
        products_file(tmp_path, failures=False),
        "--mode",
        "upsert",
        "--wait",
        "-e",
        str(tmp_path / "failed.csv"),
    )
    assert waited.returncode == 0, waited.stdout + waited.stderr
    assert "Created 4, updated 21, deleted 0, failed 0" in waited.stdout
    assert Product.objects.count() == 25
    listed = manage(rq_queue, settings, "bulk_jobs", "list")
    assert listed.returncode == 0
    assert len(listed.stdout.splitlines()) == 3


@needs_postgres
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_cancel_through_the_api_while_a_worker_writes(api, tools, start_worker, fast):
    from tests.jobs.test_workers import in_flight, reach_write, table_locked

    start_worker()
    body = {
        "items": [
            {"sku": f"C-{i}", "name": "c", "category": "Tools", "price": "1"} for i in range(60)
        ]
    }
    job_id = post(api, {**body, "chunk_size": 10, "atomic": "chunk", "async": True}).json()[
        "job_id"
    ]
    job = BulkJob.objects.get(pk=job_id)
    with table_locked("catalog_product"):
        reach_write(job, timeout=60)
        wait_for(lambda: in_flight(job), timeout=30, what="a chunk in flight")
        cancelled = api.post(f"/api/bulk-jobs/{job_id}/cancel/")
        assert cancelled.status_code == 200
        assert cancelled.json()["status"] == "cancelled"
    wait_for(
        lambda: not job.chunks.exclude(claimed_by="").exists(),
        timeout=30,
        what="the chunk in flight to end",
    )
    unprocessed = all_results(api, job_id, status="unprocessed")
    created = all_results(api, job_id, status="created")
    assert len(unprocessed) >= 10
    assert len(created) + len(unprocessed) == 60
    assert Product.objects.filter(sku__startswith="C-").count() == len(created)
    assert api.get(f"/api/bulk-jobs/{job_id}/").json()["status"] == "cancelled"


@needs_postgres
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_queue_limit_through_the_api(api, tools, start_worker, settings, fast):
    settings.BULKOPS = {
        **settings.BULKOPS,
        "MAX_RUNNING_JOBS_PER_USER": 1,
        "MAX_QUEUED_JOBS_PER_USER": 1,
    }
    body = {"items": items()[:1], "async": True}
    first = post(api, body)
    second = post(api, {"items": [{**items()[0], "sku": "B-1"}], "async": True})
    assert (first.status_code, second.status_code) == (202, 202)
    statuses = {j.status for j in BulkJob.objects.all()}
    assert statuses == {BulkJob.VALIDATING, BulkJob.QUEUED}
    refused = post(api, {"items": [{**items()[0], "sku": "B-2"}], "async": True})
    assert refused.status_code == 429
    assert refused["Retry-After"] == "30"
    start_worker()  # with the test's BULKOPS limits
    for response in (first, second):
        assert wait_job(response.json()["job_id"], timeout=60).status == BulkJob.COMPLETED
    assert post(api, {"items": [{**items()[0], "sku": "B-3"}], "async": True}).status_code == 202
