"""Several processes upsert, update and delete overlapping products through the engine
at once, for a few seconds (PostgreSQL).

What must hold, checked afterwards against an audit trigger that records every row
version a committed transaction wrote:
- no exception escapes the engine, and no chunk is given up after its retries (rows
  are locked and written in one order, so writers queue instead of deadlocking);
- every row reported ``created``/``updated`` was written with its values, by a
  transaction that committed, to the object whose id the report names;
- nothing was written for a row reported ``error`` or ``rolled_back``;
- the table ends with, for each product, the values of a row reported done.
"""

import json
import multiprocessing
import os
import time
from decimal import Decimal

import pytest
from django.db import connection

from project.catalog.models import Category, Product
from tests.engine.stress_writer import writer

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrent writers: PostgreSQL"),
    pytest.mark.django_db(transaction=True),
]

WRITERS = 4
SECONDS = float(os.environ.get("BULKOPS_STRESS_SECONDS", "20"))
GIVEN_UP = "The database could not write this chunk"

AUDIT = """
CREATE TABLE stress_audit (product_id bigint, sku text, name text, price numeric);
CREATE FUNCTION stress_audit() RETURNS trigger AS $$
BEGIN
    INSERT INTO stress_audit VALUES (NEW.id, NEW.sku, NEW.name, NEW.price);
    RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER stress_audit AFTER INSERT OR UPDATE ON catalog_product
    FOR EACH ROW EXECUTE FUNCTION stress_audit();
"""
DROP_AUDIT = """
DROP TRIGGER IF EXISTS stress_audit ON catalog_product;
DROP FUNCTION IF EXISTS stress_audit();
DROP TABLE IF EXISTS stress_audit;
"""


def test_concurrent_writers_of_overlapping_keys(tmp_path):
    Category.objects.create(name="Tools")
    with connection.cursor() as cursor:
        cursor.execute(DROP_AUDIT)
        cursor.execute(AUDIT)
    try:
        # Fresh processes (spawn, not fork): no connection of this one is shared.
        context = multiprocessing.get_context("spawn")
        database = connection.settings_dict["NAME"]
        deadline = time.time() + SECONDS
        outputs = [str(tmp_path / f"writer-{n}.jsonl") for n in range(WRITERS)]
        processes = [
            context.Process(target=writer, args=(n, database, deadline, outputs[n]))
            for n in range(WRITERS)
        ]
        for process in processes:
            process.start()
        for process in processes:
            process.join(SECONDS + 120)
        for process, out in zip(processes, outputs, strict=True):
            failure = tmp_path / (os.path.basename(out) + ".failed")
            assert not failure.exists(), failure.read_text()
            assert process.exitcode == 0

        reports = []
        for out in outputs:
            with open(out) as lines:
                reports.extend(json.loads(line) for line in lines)
        with connection.cursor() as cursor:
            cursor.execute("SELECT product_id, sku, name, price FROM stress_audit")
            written = {(pk, sku, name, price) for pk, sku, name, price in cursor.fetchall()}
            final = {p.sku: (p.pk, p.name, p.price) for p in Product.objects.all()}
    finally:
        with connection.cursor() as cursor:
            cursor.execute(DROP_AUDIT)

    by_name = {name: (pk, sku, price) for pk, sku, name, price in written}
    statuses = {}
    done_names = set()
    for report in reports:
        statuses[report["status"]] = statuses.get(report["status"], 0) + 1
        errors = json.dumps(report["errors"]) if report["errors"] else ""
        assert GIVEN_UP not in errors, report
        name = report.get("name")
        if report["status"] in ("created", "updated"):
            # Written, committed, with its values, to the object the report names.
            assert by_name.get(name) == (report["id"], report["sku"], Decimal(report["price"])), (
                report
            )
            done_names.add(name)
        elif report["status"] in ("error", "rolled_back") and name is not None:
            assert name not in by_name, report  # nothing of it was written
    for sku, (pk, name, price) in final.items():
        assert name in done_names, (sku, name)  # the table holds what was reported done
        assert by_name[name] == (pk, sku, price)
    # The run did what it is for: many rows of every kind, from every writer.
    assert statuses.get("created", 0) > 50 and statuses.get("updated", 0) > 200, statuses
    assert statuses.get("deleted", 0) > 20, statuses
    assert {r["name"].split("-")[0] for r in reports if r.get("name")} == {
        f"w{n}" for n in range(WRITERS)
    }
