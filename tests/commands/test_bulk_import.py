"""``manage.py bulk_import``: exit codes, output, error files, the progress bar.

Most tests drive the command through ``call_command`` and read the exit code
from ``SystemExit``; a few run it as a real process, the way users do.
"""

import csv
import datetime
import io
import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote

import openpyxl
import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection

from bulkops.errorfile import ErrorFileWriter, flatten_errors, neutralise
from bulkops.management.commands import bulk_import
from bulkops.progress import ProgressBar
from bulkops.registry import BulkModel, registry
from bulkops.results import ERROR, RowResult
from project.catalog.models import Product
from project.catalog.serializers import ProductSerializer
from tests.factories import CategoryFactory, ProductFactory

ROOT = Path(__file__).resolve().parents[2]
PRICE_ERROR = "price: Ensure this value is greater than or equal to 0."
HEADER = ["sku", "name", "category", "price", "quantity"]
GOOD_ROWS = [
    ["T-1", "Hammer", "Tools", "12.50", "10"],
    ["T-2", "Saw", "Tools", "7.00", "5"],
    ["T-3", "Drill", "Tools", "99.90", "1"],
]


def run(*args, **options):
    """``bulk_import`` with ``args``: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("bulk_import", *args, stdout=out, stderr=err, **options)
        code = 0
    except SystemExit as exc:
        code = exc.code
    return code, out.getvalue(), err.getvalue()


def write_csv(path, rows, header=HEADER):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return str(path)


def read_csv(path):
    with open(path, newline="", encoding="utf-8-sig") as f:
        return list(csv.reader(f))


def skus():
    return sorted(Product.objects.values_list("sku", flat=True))


@pytest.fixture
def tools(db):
    return CategoryFactory(name="Tools")


@pytest.fixture
def good_csv(tmp_path, tools):
    return write_csv(tmp_path / "products.csv", GOOD_ROWS)


@pytest.fixture
def mixed_csv(tmp_path, tools):
    """Rows 2 and 4 fine; row 3 has a negative price; row 5 a formula and an unknown category."""
    return write_csv(
        tmp_path / "mixed.csv",
        [
            ["T-1", "Hammer", "Tools", "12.50", "10"],
            ["T-2", "Saw", "Tools", "-3", "5"],
            ["T-3", "Drill", "Tools", "99.90", "1"],
            ["T-4", '=HYPERLINK("http://evil")', "Nope", "1.00", "2"],
        ],
    )


# -- importing ------------------------------------------------------------------------


def test_create_every_row_ok_exits_0(good_csv):
    code, out, err = run("catalog.Product", good_csv)

    assert (code, err) == (0, "")
    assert skus() == ["T-1", "T-2", "T-3"]
    assert Product.objects.get(sku="T-1").price == Decimal("12.50")
    first, summary = out.splitlines()
    assert first == (
        "Importing products.csv (CSV) into catalog.Product, mode create, atomic none: "
        "sku, name, category, price, quantity."
    )
    assert summary.startswith(
        "Created 3, updated 0, deleted 0, failed 0, rolled back 0 of 3 rows in "
    )
    assert summary.endswith(" rows/s).")


def test_headers_matched_loosely_and_unknown_columns_listed(tmp_path, tools):
    path = write_csv(
        tmp_path / "p.csv",
        [["T-1", "Hammer", "Tools", "1.00", "red", ""]],
        header=["SKU", "Name", "Category", "price", "colour", "notes"],
    )

    code, out, _ = run("catalog.Product", path)

    assert code == 0
    assert out.splitlines()[0].endswith(
        ": SKU, Name, Category, price. Ignoring unknown columns: colour, notes."
    )
    assert skus() == ["T-1"]


def test_failed_rows_exit_1_with_summary_and_first_errors(mixed_csv):
    code, out, err = run("catalog.Product", mixed_csv)

    assert (code, err) == (1, "")
    lines = out.splitlines()
    assert lines[1].startswith("Created 2, updated 0, deleted 0, failed 2, rolled back 0 of 4 rows")
    assert lines[2:] == [
        f"  row 3: {PRICE_ERROR}",
        "  row 5: category: Object with name=Nope does not exist.",
        "Add --errors-out failed.csv to get every failed row with its errors.",
    ]
    assert skus() == ["T-1", "T-3"]


def test_only_the_first_ten_errors_are_listed(tmp_path, tools):
    rows = [[f"T-{i}", "Thing", "Tools", "-1", "1"] for i in range(12)]
    code, out, _ = run("catalog.Product", write_csv(tmp_path / "p.csv", rows))

    assert code == 1
    errors = [line for line in out.splitlines() if line.startswith("  row ")]
    assert errors == [f"  row {n}: {PRICE_ERROR}" for n in range(2, 12)]
    assert "  ... and 2 more failed rows." in out.splitlines()


def test_errors_out_csv_holds_failed_rows_as_uploaded(mixed_csv, tmp_path):
    failed = tmp_path / "failed.csv"

    code, out, _ = run("catalog.Product", mixed_csv, "--errors-out", str(failed))

    assert code == 1
    assert out.splitlines()[-1] == f"Failed rows and their errors are in {failed}."
    assert failed.read_bytes().startswith(b"\xef\xbb\xbf")
    assert read_csv(failed) == [
        ["sku", "name", "category", "price", "quantity", "row", "errors"],
        ["T-2", "Saw", "Tools", "'-3", "5", "3", PRICE_ERROR],
        [
            "T-4",
            '\'=HYPERLINK("http://evil")',
            "Nope",
            "1.00",
            "2",
            "5",
            "category: Object with name=Nope does not exist.",
        ],
    ]


def test_errors_out_keeps_the_uploaded_header_names(tmp_path, tools):
    path = write_csv(
        tmp_path / "p.csv",
        [["T-1", "Tools", "-1", "Hammer", "x"]],
        header=["SKU", "Category", "Price", "Name", "colour"],
    )
    failed = tmp_path / "failed.csv"

    code, _, _ = run("catalog.Product", path, "-e", str(failed))

    assert code == 1
    assert read_csv(failed) == [
        ["SKU", "Category", "Price", "Name", "row", "errors"],
        ["T-1", "Tools", "'-1", "Hammer", "2", PRICE_ERROR],
    ]


def test_errors_out_xlsx(mixed_csv, tmp_path):
    failed = tmp_path / "failed.xlsx"

    code, _, _ = run("catalog.Product", mixed_csv, "--errors-out", str(failed))

    assert code == 1
    sheet = openpyxl.load_workbook(failed).active
    rows = [[cell.value for cell in row] for row in sheet.iter_rows()]
    assert rows[0] == ["sku", "name", "category", "price", "quantity", "row", "errors"]
    assert rows[1] == ["T-2", "Saw", "Tools", "'-3", "5", 3, PRICE_ERROR]
    assert rows[2][1] == '\'=HYPERLINK("http://evil")'
    assert len(rows) == 3


def test_errors_out_written_even_when_every_row_succeeds(good_csv, tmp_path):
    failed = tmp_path / "failed.csv"

    code, _, _ = run("catalog.Product", good_csv, "-e", str(failed))

    assert code == 0
    assert read_csv(failed) == [["sku", "name", "category", "price", "quantity", "row", "errors"]]


def test_dry_run_writes_nothing(mixed_csv, tmp_path):
    failed = tmp_path / "failed.csv"

    code, out, _ = run("catalog.Product", mixed_csv, "--dry-run", "-e", str(failed))

    assert code == 1
    assert skus() == []
    assert ", dry run: " in out.splitlines()[0]
    assert out.splitlines()[1].startswith(
        "Dry run, nothing written: would create 2, update 0, delete 0; "
        "failed 2, would roll back 0 of 4 rows"
    )
    assert len(read_csv(failed)) == 3


def test_dry_run_of_a_good_file_exits_0(good_csv):
    code, _, _ = run("catalog.Product", good_csv, "-n")

    assert code == 0
    assert skus() == []


@pytest.mark.parametrize(
    ("atomic", "written", "summary"),
    [
        # chunks of 2: [T-1, T-2(bad)] [T-3, T-4(bad)] [T-5]
        ("all", [], "Created 0, updated 0, deleted 0, failed 2, rolled back 3 of 5 rows"),
        ("chunk", ["T-5"], "Created 1, updated 0, deleted 0, failed 2, rolled back 2 of 5 rows"),
        (
            "none",
            ["T-1", "T-3", "T-5"],
            "Created 3, updated 0, deleted 0, failed 2, rolled back 0 of 5 rows",
        ),
    ],
)
def test_atomic_modes(tmp_path, tools, atomic, written, summary):
    rows = [[f"T-{i}", "Thing", "Tools", "-1" if i in (2, 4) else "1.00", "1"] for i in range(1, 6)]
    path = write_csv(tmp_path / "p.csv", rows)

    code, out, _ = run("catalog.Product", path, "--atomic", atomic, "--chunk-size", "2")

    assert code == 1
    assert skus() == written
    assert out.splitlines()[1].startswith(summary)
    rolled_back_note = any(
        line.startswith("Valid rows were rolled back") for line in out.splitlines()
    )
    assert rolled_back_note == (atomic != "none")


def test_atomic_defaults_to_the_setting(good_csv, settings):
    settings.BULKOPS = {"DEFAULT_ATOMIC": "all"}

    code, out, _ = run("catalog.Product", good_csv)

    assert code == 0
    assert ", atomic all:" in out.splitlines()[0]


def test_update_by_natural_key(tmp_path, tools):
    ProductFactory(sku="T-1", name="Old", category=tools, price=Decimal("1.00"), quantity=1)
    path = write_csv(
        tmp_path / "u.csv", [["T-1", "5.00"], ["T-9", "2.00"]], header=["sku", "price"]
    )

    code, out, _ = run("catalog.Product", path, "--mode", "update")

    assert code == 1
    assert out.splitlines()[1].startswith("Created 0, updated 1, deleted 0, failed 1")
    product = Product.objects.get(sku="T-1")
    assert (product.name, product.price) == ("Old", Decimal("5.00"))
    assert skus() == ["T-1"]


def test_upsert_creates_and_updates(tmp_path, tools):
    ProductFactory(sku="T-1", name="Old", category=tools)
    path = write_csv(
        tmp_path / "u.csv",
        [["T-1", "Hammer", "Tools", "5.00", "3"], ["T-2", "Saw", "Tools", "6.00", "4"]],
    )

    code, out, _ = run("catalog.Product", path, "-m", "upsert")

    assert code == 0
    assert out.splitlines()[1].startswith("Created 1, updated 1, deleted 0, failed 0")
    assert Product.objects.get(sku="T-1").name == "Hammer"
    assert skus() == ["T-1", "T-2"]


def test_delete(tmp_path, tools):
    ProductFactory(sku="T-1", category=tools)
    ProductFactory(sku="T-2", category=tools)
    path = write_csv(tmp_path / "d.csv", [["T-1"]], header=["sku"])

    code, out, _ = run("catalog.Product", path, "-m", "delete")

    assert code == 0
    assert out.splitlines()[1].startswith("Created 0, updated 0, deleted 1, failed 0")
    assert skus() == ["T-2"]


def test_xlsx_input_with_typed_cells_and_a_named_sheet(tmp_path, tools):
    book = openpyxl.Workbook()
    book.active.title = "Notes"
    book.active.append(["not the data"])
    sheet = book.create_sheet("Prices")
    sheet.append(["SKU", "Name", "Category", "Price", "Quantity", "Released"])
    sheet.append(["X-1", "Hammer", "Tools", 12.5, 10, datetime.date(2024, 3, 1)])
    sheet.append(["X-2", "Saw", "Tools", 19.99, 3.0, None])
    path = tmp_path / "products.xlsx"
    book.save(path)

    code, out, _ = run("catalog.Product", str(path), "--sheet", "Prices")

    assert code == 0, out
    assert out.splitlines()[0].startswith(
        "Importing products.xlsx, sheet 'Prices' (XLSX, 2 rows) into catalog.Product"
    )
    hammer, saw = Product.objects.order_by("sku")
    assert (hammer.price, hammer.quantity, hammer.released) == (
        Decimal("12.50"),
        10,
        datetime.date(2024, 3, 1),
    )
    assert (saw.price, saw.quantity, saw.released) == (Decimal("19.99"), 3, None)


def test_user_is_put_in_the_serializer_context(good_csv, monkeypatch):
    user = get_user_model().objects.create_user("ann")
    seen = {}
    real_run_batch = bulk_import.run_batch

    def spy(**kwargs):
        seen.update(kwargs["context"])
        return real_run_batch(**kwargs)

    monkeypatch.setattr(bulk_import, "run_batch", spy)

    code, _, _ = run("catalog.Product", good_csv, "--user", "ann")

    assert code == 0
    assert seen == {"request": None, "user": user}


def test_without_user_the_context_has_none(good_csv, monkeypatch):
    seen = {}
    real_run_batch = bulk_import.run_batch

    def spy(**kwargs):
        seen.update(kwargs["context"])
        return real_run_batch(**kwargs)

    monkeypatch.setattr(bulk_import, "run_batch", spy)

    assert run("catalog.Product", good_csv)[0] == 0
    assert seen == {"request": None, "user": None}


def test_verbosity_0_prints_nothing(mixed_csv):
    assert run("catalog.Product", mixed_csv, verbosity=0) == (1, "", "")


# -- exit 2: nothing is written, one sentence on stderr ----------------------------


def assert_usage_error(result, message):
    code, out, err = result
    assert code == 2
    assert out == ""
    assert err == message + "\n"
    assert skus() == []


def test_missing_required_column(tmp_path, tools):
    path = write_csv(tmp_path / "p.csv", [["T-1", "Hammer", "Tools"]], header=HEADER[:3])

    assert_usage_error(
        run("catalog.Product", path),
        "Column 'price' is required; the file has: sku, name, category",
    )


def test_missing_key_column_for_update(tmp_path, tools):
    path = write_csv(tmp_path / "p.csv", [["Hammer"]], header=["name"])

    assert_usage_error(
        run("catalog.Product", path, "-m", "update"),
        "Column 'id' or 'sku' is required to find the rows to update; the file has: name",
    )


def test_unreadable_xlsx(tmp_path, db):
    path = tmp_path / "broken.xlsx"
    path.write_bytes(os.urandom(4096))

    code, out, err = run("catalog.Product", str(path))

    assert (code, out) == (2, "")
    assert len(err.splitlines()) == 1
    assert "Traceback" not in err


def test_unreadable_errors_file_is_removed(tmp_path, tools, settings):
    settings.BULKOPS = {"MAX_ROWS": 2}
    failed = tmp_path / "failed.csv"

    code, _, err = run(
        "catalog.Product", write_csv(tmp_path / "p.csv", GOOD_ROWS), "-e", str(failed)
    )

    assert code == 2
    assert "more than 2 rows" in err
    assert not failed.exists()
    assert skus() == []


def test_unknown_model(good_csv):
    assert_usage_error(
        run("catalog.Nope", good_csv),
        "Unknown model 'catalog.Nope'; bulk-enabled models are: "
        "catalog.Category, catalog.Customer, catalog.Order, catalog.Product.",
    )


def test_model_that_is_not_bulk_enabled(good_csv):
    assert_usage_error(
        run("auth.Group", good_csv),
        "auth.Group is not bulk-enabled. Add `register(Group, GroupSerializer)` "
        "(from bulkops.registry import register) to the bulk.py module of an installed app, "
        "e.g. django.contrib.auth.bulk. Bulk-enabled models are: "
        "catalog.Category, catalog.Customer, catalog.Order, catalog.Product.",
    )


def test_missing_file(tmp_path, db):
    missing = str(tmp_path / "nope.csv")

    assert_usage_error(run("catalog.Product", missing), f"File {missing!r} does not exist.")


def test_unsupported_extension(tmp_path, db):
    path = tmp_path / "p.pdf"
    path.write_bytes(b"%PDF")

    code, _, err = run("catalog.Product", str(path))

    assert code == 2
    assert err.startswith("Files of type '.pdf' cannot be imported; use one of: .csv")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--atomic", "some"], "Unknown atomic 'some'; use one of all, chunk, none."),
        (["--mode", "merge"], "Unknown mode 'merge'; use one of create, update, upsert, delete."),
        (["--chunk-size", "0"], "chunk_size must be a whole number from 1 to 10000; got 0."),
        (["--user", "ghost"], "User 'ghost' does not exist."),
        (
            ["--async", "-e", "failed.csv"],
            "--errors-out needs --wait with --async; without --wait, download the failed "
            "rows later from /api/bulk-jobs/<id>/errors.csv.",
        ),
    ],
)
def test_bad_options(good_csv, args, message):
    assert_usage_error(run("catalog.Product", good_csv, *args), message)


def test_errors_out_must_not_overwrite_the_input(good_csv):
    assert_usage_error(
        run("catalog.Product", good_csv, "-e", good_csv),
        "--errors-out must name another file than the one imported.",
    )


def test_errors_out_in_a_missing_directory(good_csv, tmp_path):
    target = str(tmp_path / "no" / "failed.csv")

    assert_usage_error(
        run("catalog.Product", good_csv, "-e", target),
        f"Cannot write the errors file {target!r}: No such file or directory.",
    )


# -- model lookup (the registry) --------------------------------------------------------


@pytest.mark.parametrize("label", ["catalog.Product", "catalog.product", "CATALOG.PRODUCT"])
def test_the_model_is_resolved_through_the_registry(label):
    entry = bulk_import.resolve_model(label)

    assert (entry.model, entry.serializer_class, entry.natural_key) == (
        Product,
        ProductSerializer,
        ("sku",),
    )


def test_the_registered_natural_key_is_what_the_import_uses(tmp_path, tools, monkeypatch):
    """The registry's natural key, not the serializer's Meta: registered without one,
    rows to update must name their object by id."""
    product = ProductFactory(sku="E-1", category=tools)
    monkeypatch.setitem(
        registry._registry, "catalog.product", BulkModel(Product, ProductSerializer, ())
    )
    by_sku = tmp_path / "by_sku.csv"
    by_sku.write_text("sku,price\nE-1,7.00\n")
    by_id = tmp_path / "by_id.csv"
    by_id.write_text(f"id,price\n{product.pk},7.00\n")

    code, _, err = run("catalog.Product", str(by_sku), "--mode", "update")
    assert code == 2
    assert err.startswith("Column 'id' is required")

    assert run("catalog.Product", str(by_id), "--mode", "update")[0] == 0
    assert Product.objects.get(sku="E-1").price == Decimal("7.00")


# -- as a real process -------------------------------------------------------------------


def manage(*args, env=None):
    return subprocess.run(
        [sys.executable, "manage.py", "bulk_import", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["catalog.Nope", "x.csv"], "Unknown model 'catalog.Nope'; bulk-enabled models are: "),
        (["catalog.Product", "x.csv", "--atomic", "some"], "Unknown atomic 'some'"),
        (["catalog.Product", "missing.csv"], "File 'missing.csv' does not exist."),
        (["catalog.Product"], "the following arguments are required: file"),
        (["catalog.Product", "x.csv", "--chunk-size", "many"], "invalid int value: 'many'"),
    ],
)
def test_process_exits_2_without_a_traceback(args, message):
    done = manage(*args)

    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


def database_url(settings_dict):
    """The database of ``settings_dict`` as a DATABASE_URL another process can open, or None."""
    engine, name = settings_dict["ENGINE"], str(settings_dict["NAME"])
    if engine.endswith("sqlite3"):
        if name == ":memory:" or "mode=memory" in name or name.startswith("file:"):
            return None
        return f"sqlite:///{name}"
    if engine.endswith("postgresql"):
        user = quote(settings_dict.get("USER") or "")
        password = quote(settings_dict.get("PASSWORD") or "")
        credentials = f"{user}:{password}@" if password else f"{user}@" if user else ""
        host = settings_dict.get("HOST") or "localhost"
        port = settings_dict.get("PORT") or 5432
        return f"postgres://{credentials}{host}:{port}/{quote(name)}"
    return None


@pytest.fixture
def process_database(tmp_path):
    """``(env, skus)``: a database a ``manage.py`` process shares with this test.

    The test database when another process can open it (PostgreSQL; the test
    must use ``transaction=True`` so its rows are committed), else a migrated
    SQLite file of its own.
    """
    url = database_url(connection.settings_dict)
    if url is not None:
        CategoryFactory(name="Tools")
        return {"DATABASE_URL": url}, skus
    path = tmp_path / "process.sqlite3"
    env = {"DATABASE_URL": f"sqlite:///{path}"}
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v0"],
        cwd=ROOT,
        env={**os.environ, **env},
        check=True,
        timeout=300,
    )
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("INSERT INTO catalog_category (name) VALUES ('Tools')")

    def file_skus():
        with closing(sqlite3.connect(path)) as db:
            return sorted(sku for (sku,) in db.execute("SELECT sku FROM catalog_product"))

    return env, file_skus


@pytest.mark.django_db(transaction=True)
def test_process_imports_into_the_database(tmp_path, process_database):
    env, imported_skus = process_database
    path = write_csv(tmp_path / "p.csv", [*GOOD_ROWS, ["T-4", "Bad", "Tools", "-1", "1"]])
    failed = tmp_path / "failed.csv"

    done = manage("catalog.Product", path, "-e", str(failed), env=env)

    assert done.returncode == 1, done.stderr
    assert done.stderr == ""  # not a terminal: no progress bar
    assert "Created 3, updated 0, deleted 0, failed 1, rolled back 0 of 4 rows" in done.stdout
    assert imported_skus() == ["T-1", "T-2", "T-3"]
    assert read_csv(failed)[1] == ["T-4", "Bad", "Tools", "'-1", "1", "5", PRICE_ERROR]


# -- the progress bar -------------------------------------------------------------------


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def frames(stream):
    """The lines drawn, each as last redrawn."""
    return [line.split("\r")[-1].rstrip() for line in stream.getvalue().split("\n")]


def test_progress_bar_is_silent_when_not_a_terminal():
    stream = io.StringIO()
    bar = ProgressBar(stream, total=10)

    bar.update("validate", 5)
    bar.update("write", 10)
    bar.finish()

    assert (bar.enabled, stream.getvalue(), bar.redraws) == (False, "", 0)


def test_progress_bar_on_a_terminal_draws_both_stages_in_place():
    stream, clock = FakeTerminal(), FakeClock()
    bar = ProgressBar(stream, total=1000, clock=clock, columns=120)

    bar.update("validate", 0)
    clock.now += 1
    bar.update("validate", 500)
    clock.now += 1
    bar.update("validate", 1000)
    clock.now += 0.5
    bar.update("write", 1000)
    bar.finish()

    drawn = stream.getvalue()
    assert drawn.startswith("\rValidating [")
    assert "\rValidating [###############---------------]  50%  500/1,000 rows  500 rows/s" in drawn
    assert frames(stream) == [
        "Validating [##############################] 100%  1,000/1,000 rows  500 rows/s  2.0 s",
        "Writing    [##############################] 100%  1,000/1,000 rows  2,000 rows/s  0.5 s",
        "",
    ]


def test_progress_bar_redraws_at_most_ten_times_a_second():
    stream, clock = FakeTerminal(), FakeClock()
    bar = ProgressBar(stream, total=None, clock=clock)

    for done in range(1, 101):
        clock.now += 0.001  # 100 updates in 0.1 s
        bar.update("validate", done)

    assert bar.redraws == 1
    clock.now += 0.1
    bar.update("validate", 101)
    assert bar.redraws == 2


def test_progress_bar_without_a_total_counts_then_bars_the_write_stage():
    stream, clock = FakeTerminal(), FakeClock()
    bar = ProgressBar(stream, clock=clock, columns=120)

    bar.update("validate", 0)
    clock.now += 2
    bar.update("validate", 4000)
    clock.now += 1
    bar.update("write", 1000)
    clock.now += 1
    bar.update("write", 4000)
    bar.finish()

    validating, writing, _ = frames(stream)
    assert validating == "Validating 4,000 rows  2,000 rows/s  2.0 s"
    assert writing.startswith("Writing    [####")
    assert writing.endswith("] 100%  4,000/4,000 rows  2,000 rows/s  2.0 s")


def test_progress_bar_keeps_its_width_through_a_stage():
    stream, clock = FakeTerminal(), FakeClock()
    bar = ProgressBar(stream, total=100_000, clock=clock, columns=80)

    for done, seconds in [(0, 0), (5, 0.2), (50_000, 3), (99_999, 0.2), (100_000, 0.2)]:
        clock.now += seconds
        bar.update("validate", done)
    bar.finish()

    widths = {len(frame.split("]")[0]) for frame in stream.getvalue().split("\r")[1:]}
    assert len(widths) == 1


@pytest.mark.parametrize("columns", [30, 50, 70])
def test_progress_bar_fits_a_narrow_terminal(columns):
    stream, clock = FakeTerminal(), FakeClock()
    bar = ProgressBar(stream, total=1_000_000, clock=clock, columns=columns)

    bar.update("validate", 0)
    clock.now += 1
    bar.update("validate", 500_000)
    bar.finish()

    assert stream.getvalue().count("\r") == 3
    assert all(len(frame) < columns for frame in stream.getvalue().replace("\n", "").split("\r"))


def test_progress_bar_pads_over_a_longer_previous_frame():
    stream, clock = FakeTerminal(), FakeClock()
    bar = ProgressBar(stream, clock=clock)
    bar.update("validate", 1_000_000)
    clock.now += 1
    bar.update("validate", 1_000_000)
    clock.now += 1000
    bar.update("validate", 1_000_001)

    last = stream.getvalue().split("\r")[-1]
    previous = stream.getvalue().split("\r")[-2]
    assert len(last) >= len(previous)


# -- the error file ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=1+1", "'=1+1"),
        ("+49 30 123", "'+49 30 123"),
        ("-3", "'-3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("plain", "plain"),
        ("a=b", "a=b"),
        ("", ""),
    ],
)
def test_neutralise(value, expected):
    assert neutralise(value) == expected


def test_flatten_errors():
    errors = {
        "non_field_errors": ["Row 4 duplicates row 2."],
        "price": ["Too low.", "Not a number."],
        "lines": [{}, {"quantity": ["Required."]}],
        "address": {"city": ["Required."]},
    }

    assert flatten_errors(errors) == (
        "Row 4 duplicates row 2.; price: Too low.; price: Not a number.; "
        "lines[1].quantity: Required.; address.city: Required."
    )


def test_error_file_writer_streams_failed_rows_only():
    out = io.BytesIO()
    writer = ErrorFileWriter(out, ["Unit Price", "SKU"], {"Unit Price": "price", "SKU": "sku"})

    writer.write(RowResult(0, "created", row=2))
    size_after_header = len(out.getvalue())
    writer.write(
        RowResult(
            1,
            ERROR,
            row=3,
            errors={"price": ["Too low."]},
            values={"price": -1, "sku": "=cmd|' /C calc'!A0"},
        )
    )
    assert len(out.getvalue()) > size_after_header  # written at once, not held
    writer.write(RowResult(2, ERROR, errors={"sku": ["Required."]}, values={"price": "2.5"}))
    writer.close()

    rows = list(csv.reader(io.StringIO(out.getvalue().decode("utf-8-sig"))))
    assert rows == [
        ["Unit Price", "SKU", "row", "errors"],
        ["-1", "'=cmd|' /C calc'!A0", "3", "price: Too low."],
        ["2.5", "", "2", "sku: Required."],
    ]
    assert writer.rows_written == 2


# -- Ctrl-C ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reported", "dry_run", "message"),
    [
        (0, False, "Interrupted; nothing was written."),
        (3, True, "Interrupted; nothing was written."),
        (3, False, "Interrupted; 3 rows were written before and stay written."),
    ],
)
def test_interrupt_says_what_stays_written(good_csv, monkeypatch, reported, dry_run, message):
    def interrupted_run_batch(*, on_row, **kwargs):
        for index in range(reported):
            on_row(RowResult(index, "created", row=index + 2))
        raise KeyboardInterrupt

    monkeypatch.setattr(bulk_import, "run_batch", interrupted_run_batch)
    args = ["--dry-run"] if dry_run else []

    code, _, err = run("catalog.Product", good_csv, *args)

    assert (code, err) == (130, message + "\n")


def test_command_draws_the_bar_on_a_terminal_only(good_csv):
    terminal = FakeTerminal()

    call_command("bulk_import", "catalog.Product", good_csv, stdout=io.StringIO(), stderr=terminal)

    lines = terminal.getvalue().split("\n")
    assert lines[0].startswith("\rValidating 0 rows")  # a CSV does not know its length
    assert lines[0].endswith(" s")
    assert lines[1].startswith("\rWriting    [")
    assert run("catalog.Product", good_csv, "-m", "upsert")[2] == ""  # a StringIO is no terminal
