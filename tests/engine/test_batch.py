"""``Batch`` stage by stage: what jobs do with it gives exactly what ``run_batch`` gives.

A job validates chunks on their own (``track_duplicates=False``), stores them as JSON
with their keys, names the rows that share a key with ``duplicate_errors``, and later
writes each chunk (perhaps twice, after a rollback) inside a transaction of its own.
"""

import json
import threading
from collections import defaultdict
from decimal import Decimal

import psycopg
import pytest
from django.db import OperationalError, connection, connections, transaction

from bulkops.engine import Batch, SourceRow, StagedChunk, retry, run_batch
from project.catalog.models import Category, Product
from project.catalog.serializers import ProductSerializer
from tests.factories import ProductFactory, ProductItemFactory

CHUNK = 3


class Rollback(Exception):
    pass


def item(sku, **fields):
    return ProductItemFactory(sku=sku, **fields)


def rows_for(mode, products):
    """Rows with duplicates inside one chunk and across chunks, a key three times, an
    object named twice (by id and by sku), invalid rows, and rows that are fine."""
    pk = {p.sku: p.pk for p in products}
    if mode == "create":
        return [
            item("A"), item("B"), item("A"),  # A: same chunk ...
            item("C"), item("B"), item("D", price="-1"),  # B: across chunks
            item("A"), item("E"), item("F"),  # A: a third time
            item("E-0"), item("G", category="Nope"), item("H"),  # E-0 exists already
        ]  # fmt: skip
    if mode == "update":
        return [
            {"sku": "E-1", "price": "1.00"}, {"id": pk["E-2"], "name": "Two"}, {"sku": "E-3"},
            {"sku": "E-2", "price": "2.00"}, {"id": pk["E-1"], "price": "-5"}, {"sku": "NOPE"},
            {"sku": "E-1", "name": "again"}, {"id": pk["E-0"], "sku": "NEW"}, {"sku": "E-4"},
            {"id": pk["E-3"], "sku": "NEW"}, {"sku": "E-0", "sku ": "x"}, {"id": "x"},
        ]  # fmt: skip
    if mode == "upsert":
        return [
            item("E-1"), item("N-1"), item("E-1", price="5.00"),
            item("N-1"), item("N-2"), item("E-2", price="-1"),
            item("N-1"), item("E-2"), item("E-3", name=""),
            item("N-3"), item("E-3"), item("N-4"),
        ]  # fmt: skip
    return [
        {"sku": "E-1"}, {"id": pk["E-2"]}, {"sku": "E-1"},
        {"sku": "E-2"}, {"sku": "NOPE"}, {"id": pk["E-3"]},
        {"sku": "E-1"}, {"sku": "E-4"}, {},
        {"id": "x"}, {"sku": "E-0"}, {"sku": "E-3"},
    ]  # fmt: skip


def as_file_rows(rows):
    return [SourceRow(dict(r), row=i + 2, ref=f"r{i}") for i, r in enumerate(rows)]


def normalised(results):
    """Results without the ids PostgreSQL's sequences hand out (not rolled back)."""
    out = []
    for r in results:
        d = r.as_dict()
        if r.status == "created":
            d["id"] = "new"
            if d.get("data"):
                d["data"] = {**d["data"], "id": "new"}
        out.append((d, r.values if r.status == "error" else None))
    return out


def job_flow(rows, *, mode, atomic, in_transaction=None):
    """What a job does, chunk by chunk, with JSON in between and another Batch (another
    worker) writing."""
    options = dict(serializer_class=ProductSerializer, mode=mode, atomic=atomic, with_data=True)
    validating = Batch(chunk_size=CHUNK, **options)
    stored, keys, order = [], defaultdict(list), ["target"]
    for start in range(0, len(rows), CHUNK):
        staged = validating.validate_chunk(
            start, rows[start : start + CHUNK], track_duplicates=False
        )
        stored.append(json.dumps(staged.to_json()))
        for constraint, entries in validating.chunk_keys(staged).items():
            order += [constraint] if constraint not in order else []
            for key_text, position, *field in entries:
                keys[(constraint, key_text)].append((position, field[0] if field else None))
    writing = Batch(chunk_size=CHUNK, **options)
    chunks = [StagedChunk.from_json(text, model=Product) for text in stored]
    is_file_row = isinstance(rows[0], SourceRow)
    for (constraint, _), entries in sorted(keys.items(), key=lambda kv: order.index(kv[0][0])):
        if len(entries) > 1:
            errors = writing.duplicate_errors(
                constraint,
                [position for position, _ in entries],
                is_file_row=is_file_row,
                fields={position: field for position, field in entries if field},
            )
            chunks = [chunk.with_errors(errors) for chunk in chunks]
    if atomic == "all":
        return list(writing.write_all(chunks, in_transaction))
    return [result for chunk in chunks for result in writing.write_chunk(chunk, in_transaction)]


def table():
    return sorted(Product.objects.values_list("sku", "name", "price", "category__name"))


@pytest.mark.django_db
@pytest.mark.parametrize("file_rows", [False, True], ids=["items", "file rows"])
@pytest.mark.parametrize("atomic", ["none", "chunk", "all"])
@pytest.mark.parametrize("mode", ["create", "update", "upsert", "delete"])
def test_a_job_like_flow_gives_exactly_what_run_batch_gives(products, mode, atomic, file_rows):
    rows = rows_for(mode, products)
    if file_rows:
        rows = as_file_rows(rows)
    with transaction.atomic():
        by_job = job_flow(rows, mode=mode, atomic=atomic)
        table_by_job = table()
        transaction.set_rollback(True)

    by_run = run_batch(
        serializer_class=ProductSerializer, rows=rows, mode=mode, atomic=atomic, chunk_size=CHUNK
    ).results

    assert normalised(by_job) == normalised(by_run)
    assert table_by_job == table()
    statuses = {r.status for r in by_run}
    assert "error" in statuses and statuses != {"error"}
    if atomic == "none":
        assert statuses & {"created", "updated", "deleted"}


def duplicate(label):
    return f"Duplicate sku: {label} of this batch has the same value."


def same_object(label):
    return f"The same object is named by {label} of this batch."


@pytest.mark.django_db
def test_the_duplicate_messages_the_two_flows_share(products):
    """What both flows give (pinned here so 'equal' cannot mean 'equally wrong')."""
    results = run_batch(
        serializer_class=ProductSerializer,
        rows=rows_for("create", products),
        mode="create",
        chunk_size=CHUNK,
    ).results
    errors = {r.index: r.errors for r in results if r.status == "error"}
    assert errors == {
        0: {"sku": [duplicate("item 2"), duplicate("item 6")]},
        1: {"sku": [duplicate("item 4")]},
        2: {"sku": [duplicate("item 0")]},
        4: {"sku": [duplicate("item 1")]},
        5: {"price": ["Ensure this value is greater than or equal to 0."]},
        6: {"sku": [duplicate("item 0")]},
        9: {"sku": ["product with this SKU already exists."]},
        10: {"category": ["Object with name=Nope does not exist."]},
    }
    updates = run_batch(
        serializer_class=ProductSerializer,
        rows=rows_for("update", products),
        mode="update",
        chunk_size=CHUNK,
        dry_run=True,
    ).results
    errors = {r.index: r.errors for r in updates if r.status == "error"}
    assert errors == {
        0: {"sku": [same_object("item 4"), same_object("item 6")]},
        1: {"id": [same_object("item 3")]},
        2: {"sku": [same_object("item 9")]},
        3: {"sku": [same_object("item 1")]},
        4: {
            "price": ["Ensure this value is greater than or equal to 0."],
            "id": [same_object("item 0")],
        },
        5: {"sku": ["No product with sku=NOPE."]},
        6: {"sku": [same_object("item 0")]},
        7: {"id": [same_object("item 10")], "sku": [duplicate("item 9")]},
        9: {"id": [same_object("item 2")], "sku": [duplicate("item 7")]},
        10: {"sku": [same_object("item 7")]},
        11: {"id": ["A valid integer is required."]},
    }
    assert [r.status for r in updates].count("updated") == 1


@pytest.mark.django_db
def test_without_tracking_no_duplicate_is_reported_even_inside_the_chunk(tools):
    batch = Batch(serializer_class=ProductSerializer, mode="create")
    staged = batch.validate_chunk(0, [item("A"), item("A")], track_duplicates=False)

    assert staged.invalid == 0
    assert batch.chunk_keys(staged) == {"unique:sku": [["A", 0], ["A", 1]]}
    assert batch.duplicate_errors("unique:sku", [1, 0], is_file_row=False) == {
        0: {"sku": [duplicate("item 1")]},
        1: {"sku": [duplicate("item 0")]},
    }
    assert batch.duplicate_errors("unique:sku", [4]) == {}
    with pytest.raises(ValueError, match="Unknown constraint 'unique:name'; this batch has: "):
        batch.duplicate_errors("unique:name", [1, 2])


# -- writing a chunk twice --------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("atomic", ["none", "chunk"])
@pytest.mark.parametrize("with_data", [True, False])
def test_a_chunk_written_twice_after_a_rollback_gives_identical_results(
    products, atomic, with_data
):
    pk = {p.sku: p.pk for p in products}
    temporary = Category.objects.create(name="Temporary")
    rows = [
        item("N-1"),
        item("RACE", name="Mine"),  # another writer creates this sku after validation
        {"sku": "E-1", "name": "Updated", "category": "Tools", "price": "1.00"},
        item("GONE", category="Temporary"),  # its category is deleted after validation
    ]
    batch = Batch(
        serializer_class=ProductSerializer, mode="upsert", atomic=atomic, with_data=with_data
    )
    staged = batch.validate_chunk(0, rows)
    frozen = json.dumps(staged.to_json())
    ProductFactory(sku="RACE", name="Theirs", category=products[0].category)
    temporary.delete()
    attempts = []
    for _ in range(2):
        with transaction.atomic():
            attempts.append(batch.write_chunk(staged))
            written = table()
            transaction.set_rollback(True)

    assert json.dumps(staged.to_json()) == frozen  # writing consumed nothing
    assert normalised(attempts[0]) == normalised(attempts[1])
    statuses = [r.status for r in attempts[0]]
    if atomic == "none":
        assert statuses == ["created", "updated", "updated", "error"]
        assert ("E-1", "Updated", Decimal("1.00"), "Tools") in written
        assert ("RACE", "Mine", Decimal(rows[1]["price"]), rows[1]["category"]) in written
        if with_data:
            assert attempts[0][1].data["name"] == "Mine"
    else:
        assert statuses == ["rolled_back", "rolled_back", "rolled_back", "error"]
        assert ("E-1", "Updated", Decimal("1.00"), "Tools") not in written
    assert attempts[0][3].errors == {"category": ["Object with name=Temporary does not exist."]}
    assert Product.objects.get(pk=pk["E-1"]).name == "Existing 1"  # rolled back, both times


# -- in_transaction -----------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("atomic", ["none", "chunk"])
def test_in_transaction_sees_the_results_and_commits_with_the_chunk(tools, atomic):
    batch = Batch(serializer_class=ProductSerializer, mode="create", atomic=atomic)
    staged = batch.validate_chunk(0, [item("A"), item("B")])
    seen = []

    def mark_done(results):
        seen.append(([r.status for r in results], Product.objects.count()))
        Category.objects.create(name="chunk 0 done")

    results = batch.write_chunk(staged, mark_done)

    assert seen == [(["created", "created"], 2)]
    assert [r.status for r in results] == ["created", "created"]
    assert Category.objects.filter(name="chunk 0 done").exists()


@pytest.mark.django_db
def test_an_exception_in_in_transaction_rolls_the_chunk_back(tools):
    batch = Batch(serializer_class=ProductSerializer, mode="create", atomic="none")
    staged = batch.validate_chunk(0, [item("A"), item("B")])

    def fail(results):
        Category.objects.create(name="half done")
        raise RuntimeError("the job was cancelled")

    with pytest.raises(RuntimeError, match="cancelled"):
        batch.write_chunk(staged, fail)

    assert Product.objects.count() == 0
    assert not Category.objects.filter(name="half done").exists()
    # Nothing was consumed: the chunk writes as if it had never been tried.
    assert [r.status for r in batch.write_chunk(staged)] == ["created", "created"]


@pytest.mark.django_db
def test_in_transaction_commits_even_when_the_database_rolls_the_chunk_back(products):
    """atomic=chunk: a refused row rolls the rows back; the callback's mark still commits,
    with results that say so."""
    batch = Batch(serializer_class=ProductSerializer, mode="create", atomic="chunk")
    staged = batch.validate_chunk(0, [item("A"), item("TAKEN")])
    ProductFactory(sku="TAKEN", category=products[0].category)
    seen = []

    def mark(results):
        seen.append([r.status for r in results])
        Category.objects.create(name="marked")

    results = batch.write_chunk(staged, mark)

    assert seen == [["rolled_back", "error"]] == [[r.status for r in results]]
    assert not Product.objects.filter(sku="A").exists()
    assert Category.objects.filter(name="marked").exists()


@pytest.mark.django_db
@pytest.mark.parametrize("failing", [False, True])
def test_write_all_calls_in_transaction_per_chunk_then_on_the_final_results(tools, failing):
    rows = [item(f"A-{i}") for i in range(5)]
    batch = Batch(serializer_class=ProductSerializer, mode="create", atomic="all", chunk_size=2)
    chunks = [batch.validate_chunk(s, rows[s : s + 2]) for s in range(0, 5, 2)]
    if failing:  # another writer takes the last sku: the database refuses it at the end
        ProductFactory(sku="A-4", category=tools)
    calls = []

    def record(results):
        calls.append(([r.index for r in results], {r.status for r in results}))
        Category.objects.create(name=f"call {len(calls)}")

    results = list(batch.write_all(iter(chunks), record))

    if not failing:
        assert calls == [([0, 1], {"created"}), ([2, 3], {"created"}), ([4], {"created"})]
        assert Product.objects.count() == 5
        assert Category.objects.filter(name__startswith="call").count() == 3
        return
    # The per-chunk calls of the rolled back transaction left nothing; the final call did.
    assert calls == [
        ([0, 1], {"created"}),
        ([2, 3], {"created"}),
        ([0, 1], {"rolled_back"}),
        ([2, 3], {"rolled_back"}),
        ([4], {"error"}),
    ]
    assert [r.status for r in results] == ["rolled_back"] * 4 + ["error"]
    assert Product.objects.count() == 1
    assert sorted(
        Category.objects.filter(name__startswith="call").values_list("name", flat=True)
    ) == [
        "call 3",
        "call 4",
        "call 5",
    ]


def test_the_wrong_write_call_for_the_atomic_mode_is_refused(db):
    with pytest.raises(ValueError, match="use write_all"):
        Batch(serializer_class=ProductSerializer, mode="create", atomic="all").write_chunk(
            StagedChunk(0, [], {}, Product)
        )
    with pytest.raises(ValueError, match="write_all\\(\\) is for atomic='all'"):
        Batch(serializer_class=ProductSerializer, mode="create", atomic="none").write_all([])


# -- deadlocks and serialization failures -----------------------------------------------------


def deadlock():
    try:
        raise psycopg.errors.DeadlockDetected("deadlock detected")
    except psycopg.Error as cause:
        raise OperationalError("deadlock detected") from cause


@pytest.fixture
def no_backoff(monkeypatch):
    monkeypatch.setattr(retry, "BACKOFF_SECONDS", 0)


@pytest.mark.django_db
def test_a_deadlock_is_retried_with_the_callback(tools, no_backoff):
    batch = Batch(serializer_class=ProductSerializer, mode="create", atomic="none")
    staged = batch.validate_chunk(0, [item("A"), item("B")])
    calls = []

    def flaky(results):
        calls.append(Product.objects.count())
        if len(calls) < 3:
            deadlock()

    results = batch.write_chunk(staged, flaky)

    assert calls == [2, 2, 2]  # each attempt saw only its own rows
    assert [r.status for r in results] == ["created", "created"]
    assert Product.objects.count() == 2


@pytest.mark.django_db
def test_a_chunk_that_keeps_deadlocking_is_reported_not_raised(tools, no_backoff):
    batch = Batch(serializer_class=ProductSerializer, mode="create", atomic="none")
    staged = batch.validate_chunk(0, [item("A"), item("B", price="-1")])
    calls = []

    def always(results):
        calls.append([r.status for r in results])
        if "created" in calls[-1]:
            deadlock()

    results = batch.write_chunk(staged, always)

    message = (
        "The database could not write this chunk (deadlock detected), 4 times; "
        "nothing of it was written. Try again."
    )
    assert [r.status for r in results] == ["error", "error"]
    assert results[0].errors == {"non_field_errors": [message]}
    assert results[1].errors == {"price": ["Ensure this value is greater than or equal to 0."]}
    assert calls == [["created", "error"]] * 4 + [["error", "error"]]
    assert Product.objects.count() == 0


@pytest.mark.skipif(connection.vendor != "postgresql", reason="a real deadlock needs PostgreSQL")
@pytest.mark.django_db(transaction=True)
def test_a_real_deadlock_between_two_writers_is_retried(no_backoff):
    """Two chunks whose callbacks lock two rows in opposite orders: PostgreSQL kills one
    transaction; it runs again and both chunks commit."""
    tools = Category.objects.create(name="Tools")
    first, second = (Category.objects.create(name=n) for n in ("lock 1", "lock 2"))
    barrier = threading.Barrier(2, timeout=10)
    outcome = {}

    def writer(name, locks):
        try:
            batch = Batch(serializer_class=ProductSerializer, mode="create", atomic="none")
            staged = batch.validate_chunk(0, [item(f"{name}-1"), item(f"{name}-2")])
            tries = []

            def lock_in_order(results):
                tries.append(1)
                Category.objects.select_for_update().get(pk=locks[0].pk)
                if len(tries) == 1:
                    barrier.wait()  # both hold their first lock
                Category.objects.select_for_update().get(pk=locks[1].pk)

            outcome[name] = ([r.status for r in batch.write_chunk(staged, lock_in_order)], tries)
        except Exception as exc:  # pragma: no cover - reported by the assert below
            outcome[name] = exc
        finally:
            connections.close_all()

    threads = [
        threading.Thread(target=writer, args=("L", (first, second))),
        threading.Thread(target=writer, args=("R", (second, first))),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert outcome["L"][0] == outcome["R"][0] == ["created", "created"], outcome
    assert sorted(len(outcome[n][1]) for n in "LR") == [1, 2]  # one lost once, ran again
    assert sorted(Product.objects.values_list("sku", flat=True)) == ["L-1", "L-2", "R-1", "R-2"]
    assert tools.pk


def count_from_another_connection():
    """Products another connection sees (a thread has its own connection)."""
    seen = []

    def count():
        try:
            seen.append(Product.objects.count())
        finally:
            connections.close_all()

    thread = threading.Thread(target=count)
    thread.start()
    thread.join(10)
    return seen[0]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite serialises its writers")
@pytest.mark.django_db(transaction=True)
def test_in_transaction_runs_before_the_chunk_commits():
    Category.objects.create(name="Tools")
    batch = Batch(serializer_class=ProductSerializer, mode="create", atomic="none")
    staged = batch.validate_chunk(0, [item("A"), item("B")])
    seen = []

    def look(results):
        seen.append((Product.objects.count(), count_from_another_connection()))

    batch.write_chunk(staged, look)

    assert seen == [(2, 0)]  # written, not yet committed
    assert count_from_another_connection() == 2


@pytest.mark.django_db
@pytest.mark.parametrize("atomic", ["none", "chunk", "all"])
def test_run_batch_hands_each_chunk_its_results_in_the_transaction(tools, atomic):
    rows = [item(f"A-{i}") for i in range(5)]
    rows[3]["price"] = "-1"
    calls = []

    def record(results):
        calls.append(([r.index for r in results], [r.status for r in results]))

    result = run_batch(
        serializer_class=ProductSerializer,
        rows=rows,
        mode="create",
        atomic=atomic,
        chunk_size=2,
        in_transaction=record,
    )

    assert [status for _, statuses in calls for status in statuses] == [
        r.status for r in result.results
    ]
    assert [indexes for indexes, _ in calls] == [[0, 1], [2, 3], [4]]
    expected = {
        "none": ["created", "created", "created", "error", "created"],
        "chunk": ["created", "created", "rolled_back", "error", "created"],
        "all": ["rolled_back", "rolled_back", "rolled_back", "error", "rolled_back"],
    }[atomic]
    assert [r.status for r in result.results] == expected


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("atomic", ["none", "chunk"])
def test_a_chunk_is_written_under_one_savepoint(atomic):
    from django.test.utils import CaptureQueriesContext

    Category.objects.create(name="Tools")
    rows = [item(f"A-{i}") for i in range(120)]
    with CaptureQueriesContext(connection) as queries:
        result = run_batch(
            serializer_class=ProductSerializer,
            rows=rows,
            mode="create",
            atomic=atomic,
            chunk_size=60,
            keep_results=False,
        )

    assert result.succeeded == 120
    savepoints = [q for q in queries.captured_queries if q["sql"].startswith("SAVEPOINT")]
    assert len(savepoints) == 2  # one per chunk


@pytest.mark.django_db(transaction=True)
def test_a_refused_row_rolls_its_chunk_back_and_in_transaction_still_commits():
    """atomic=chunk without a savepoint of the chunk's own: the refusal rolls back the
    chunk's transaction, and the callback's results commit in a transaction of theirs."""
    tools = Category.objects.create(name="Tools")
    Product.objects.create(sku="TAKEN", name="n", category=tools, price=1, quantity=1)
    batch = Batch(serializer_class=ProductSerializer, mode="create", atomic="chunk")
    staged = batch.validate_chunk(0, [item("A"), item("TAKEN-LATER"), item("B")])
    # Another writer takes a key between validation and the write.
    Product.objects.create(sku="TAKEN-LATER", name="n", category=tools, price=1, quantity=1)
    seen = []

    def record(results):
        seen.append([r.status for r in results])
        Category.objects.create(name="Written by the callback")

    results = batch.write_chunk(staged, record)

    assert [r.status for r in results] == ["rolled_back", "error", "rolled_back"]
    assert seen == [["rolled_back", "error", "rolled_back"]]
    assert set(Product.objects.values_list("sku", flat=True)) == {"TAKEN", "TAKEN-LATER"}
    assert Category.objects.filter(name="Written by the callback").exists()
