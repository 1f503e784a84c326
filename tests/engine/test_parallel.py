"""Worker-process validation gives exactly the results of in-process validation."""

import pytest
from django.db import connection

from bulkops.engine import SourceRow, run_batch
from bulkops.engine import run as run_module
from project.catalog.models import Category, Product
from project.catalog.serializers import ProductSerializer

pytestmark = pytest.mark.django_db(transaction=True)
ChunkWorkers = run_module.ChunkWorkers


def _rows(count):
    rows = [
        {"sku": f"P-{i:05d}", "name": f"n{i}", "category": "Tools", "price": "1.00", "quantity": i}
        for i in range(count)
    ]
    rows[1500]["sku"] = rows[3100]["sku"]  # same chunk set, both validated in workers
    rows[200]["sku"] = "P-02999"  # in-process chunk vs a worker chunk
    rows[2500]["category"] = "Nope"
    rows[2600]["sku"] = "TAKEN"  # already in the database
    return [SourceRow(values=r, row=i + 2) for i, r in enumerate(rows)]


def _run(settings, monkeypatch, workers, atomic="none"):
    settings.BULKOPS = {"VALIDATION_WORKERS": workers}
    monkeypatch.setattr(run_module, "PARALLEL_AFTER_ROWS", 1000)
    Product.objects.all().delete()
    Category.objects.all().delete()
    tools = Category.objects.create(name="Tools")
    Product.objects.create(sku="TAKEN", name="x", category=tools, price=1, quantity=1)
    calls = []
    monkeypatch.setattr(
        run_module,
        "ChunkWorkers",
        _spy(ChunkWorkers, calls),
    )

    def race(stage, done):
        # Another writer takes a sku once every row is validated, before any write.
        if stage == "validate" and done == 4000:
            Product.objects.create(sku="P-03500", name="r", category=tools, price=1, quantity=1)

    result = run_batch(
        serializer_class=ProductSerializer,
        rows=_rows(4000),
        mode="create",
        chunk_size=250,
        with_data=False,
        atomic=atomic,
        on_progress=race,
    )
    outcome = [(r.index, r.status, r.errors) for r in result.results]
    return outcome, calls, Product.objects.count()


def _spy(cls, calls):
    def make(*args, **kwargs):
        calls.append(args[1])
        return cls(*args, **kwargs)

    return make


@pytest.mark.skipif(connection.vendor != "postgresql", reason="workers run on PostgreSQL only")
@pytest.mark.parametrize("atomic", ["none", "chunk"])
def test_workers_report_what_in_process_validation_reports(settings, monkeypatch, atomic):
    serial, serial_calls, serial_count = _run(settings, monkeypatch, 0, atomic)
    parallel, parallel_calls, parallel_count = _run(settings, monkeypatch, 2, atomic)
    assert serial_calls == [] and parallel_calls == [2]
    assert parallel == serial
    statuses = [status for _, status, _ in parallel]
    if atomic == "none":
        # TAKEN + the racing row already there; 6 invalid rows and the raced one fail
        assert parallel_count == serial_count == 2 + 4000 - 7
    else:
        # the 6 chunks of 250 holding an error are rolled back whole
        assert statuses.count("rolled_back") == 6 * 250 - 7
        assert parallel_count == serial_count == 2 + 4000 - 6 * 250
    assert statuses.count("error") == 7
    assert parallel[3500][2] == {"sku": ["product with this SKU already exists."]}
    errors = {i: e for i, status, e in parallel if status == "error"}
    assert errors[1500] == {"sku": ["Duplicate sku: row 3102 of this batch has the same value."]}
    assert errors[3100] == {"sku": ["Duplicate sku: row 1502 of this batch has the same value."]}
    assert errors[200] == {"sku": ["Duplicate sku: row 3001 of this batch has the same value."]}
    assert errors[2999] == {"sku": ["Duplicate sku: row 202 of this batch has the same value."]}
    assert errors[2500] == {"category": ["Object with name=Nope does not exist."]}
    assert errors[2600] == {"sku": ["product with this SKU already exists."]}
