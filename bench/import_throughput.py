"""Import throughput: bulkops' engine against a raw COPY, django-import-export and another
bulkops commit, same data, same database.

    python bench/import_throughput.py --rows 200000 --formats csv --repeat 3 \\
        --baseline-tree /work/wt/baseline --skip-import-export
    python bench/import_throughput.py --rows 100000
    python bench/import_throughput.py --rows 1000000 --formats csv --skip-import-export
    python bench/import_throughput.py --rows 20000 --formats csv --profile

Generates N product rows as CSV (and XLSX), then imports each file into an empty product
table, every import in its own child process so its peak RSS is its own:

- ``bulkops``: the file read by ``bulkops.engine.readers.open_rows`` and written by
  ``run_batch`` (mode create, atomic none, chunks of 1000) in one process — what
  ``manage.py bulk_import`` does;
- ``raw COPY`` (CSV on PostgreSQL): the same file read by the ``csv`` module, the
  category resolved to its id from a dict, every row sent by one ``COPY`` in one
  transaction: no validation at all, the ceiling of what any importer can do here;
- ``baseline`` (``--baseline-tree DIR``): the engine of another checkout of bulkops
  (``git worktree add DIR <commit>`` with its own ``.venv``), run by this script's child
  code with that tree's Python, its settings as they are (e.g. the fork pool of 96e4545);
- ``django-import-export``: a plain ``ModelResource`` with ``import_id_fields=["sku"]``
  and a ``ForeignKeyWidget`` for the category by name, as its users write it, fed the
  same file through tablib. It runs about a thousand rows a second, so it gets the first
  ``--ie-rows`` rows (20,000) of the file; ``--ie-rows 0`` gives it all.

``--repeat N`` runs bulkops, the baseline and the raw COPY N times each, interleaved, and
the summary compares their medians: bulkops / raw COPY, bulkops / baseline, bulkops /
django-import-export. Prints rows/s and peak RSS of each run (the baseline's validation
worker processes apart). ``--profile`` runs bulkops once under pyinstrument (``pip install
pyinstrument``) and prints where its time goes. The database is ``DATABASE_URL`` (default a
``bulkops_bench`` database on the local PostgreSQL, created if missing).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchdb import ROOT, ensure_database, setup_django

DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/bulkops_bench"
HEADERS = ["sku", "name", "category", "price", "quantity", "active", "released"]
CATEGORIES = [f"Category {i}" for i in range(20)]
BULKOPS, BASELINE, COPY, IMPORT_EXPORT = "bulkops", "baseline", "raw COPY", "django-import-export"


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


def import_with_bulkops(path: Path, chunk_size: int = 1000) -> dict:
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
            chunk_size=chunk_size,
            keep_results=False,
            with_data=False,
            on_row=on_row,
        )
    return {"rows": result.total, "ok": result.succeeded, "sample_errors": failed}


def import_with_copy(path: Path) -> dict:
    """The same rows by one ``COPY``: category names resolved from a dict, nothing checked."""
    from django.db import connection, transaction

    from project.catalog.models import Category, Product

    ids = dict(Category.objects.values_list("name", "id"))
    meta = Product._meta
    qn = connection.ops.quote_name
    names = ["sku", "name", "category", "price", "quantity", "active", "released"]
    columns = ", ".join(qn(meta.get_field(name).column) for name in names)
    rows = 0
    sql = f"COPY {qn(meta.db_table)} ({columns}) FROM STDIN"
    with path.open(newline="", encoding="utf-8") as f, transaction.atomic():
        reader = csv.reader(f)
        header = next(reader)
        positions = [header.index(name) for name in HEADERS]
        with connection.cursor() as cursor, cursor.cursor.copy(sql) as copy:
            write_row = copy.write_row
            for record in reader:
                sku, name, category, price, quantity, active, released = (
                    record[p] for p in positions
                )
                write_row((sku, name, ids[category], price, quantity, active, released))
                rows += 1
    return {"rows": rows, "ok": rows, "sample_errors": []}


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
    setup_django(args.database_url, Path(args.tree) if args.tree else ROOT)
    import resource

    from project.catalog.models import Product

    _reset_tables()
    path = Path(args.file)
    # Start-up forks small helpers (platform's `file`): only what the import starts counts.
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    profiler = None
    if args.profile:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.001)
        profiler.start()
    start = time.perf_counter()
    if args.child == "bulkops":
        outcome = import_with_bulkops(path, args.chunk_size)
    elif args.child == "copy":
        outcome = import_with_copy(path)
    else:
        outcome = import_with_import_export(path, args.ie_rows)
    seconds = time.perf_counter() - start
    if profiler is not None:
        profiler.stop()
        print(profiler.output_text(unicode=False, color=False), file=sys.stderr)
    outcome.update(seconds=seconds, in_db=Product.objects.count())
    outcome["self_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # Worker processes (the fork pool of older commits) are this process's children.
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    outcome["workers_rss_mb"] = children / 1024 if children > children_before else 0
    print(json.dumps(outcome))


# -- parent side -------------------------------------------------------------------------


def run_child(tool: str, path: Path, args: argparse.Namespace, profile: bool = False) -> dict:
    python, tree = sys.executable, ROOT
    if tool == BASELINE:
        tree = Path(args.baseline_tree).resolve()
        python = args.baseline_python or str(tree / ".venv" / "bin" / "python")
    child = {BULKOPS: "bulkops", BASELINE: "bulkops", COPY: "copy"}.get(tool, "import-export")
    command = [
        python,
        str(Path(__file__).resolve()),
        "--child",
        child,
        "--tree",
        str(tree),
        "--file",
        str(path),
        "--database-url",
        args.database_url,
        "--ie-rows",
        str(args.ie_rows),
        "--chunk-size",
        str(args.chunk_size),
        *(["--profile"] if profile else []),
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=tree)
    out = process.stdout.read()  # type: ignore[union-attr]
    _, status, _usage = os.wait4(process.pid, 0)
    if status != 0:
        raise SystemExit(f"{tool} import of {path.name} failed (exit status {status}).")
    outcome = json.loads(out.strip().splitlines()[-1])
    outcome["peak_rss_mb"] = outcome.pop("self_rss_mb")
    outcome["rate"] = outcome["rows"] / outcome["seconds"] if outcome["seconds"] else 0.0
    return outcome


def report(tool: str, fmt: str, outcome: dict) -> None:
    workers = outcome.get("workers_rss_mb") or 0
    extra = f", each worker process {workers:.0f} MB" if workers >= 1 else ""
    print(
        f"{tool:<22} {fmt:<5} {outcome['rows']:>9,} rows  {outcome['seconds']:8.2f} s  "
        f"{outcome['rate']:>9,.0f} rows/s  peak RSS {outcome['peak_rss_mb']:6.0f} MB{extra}  "
        f"(written: {outcome['in_db']:,})",
        flush=True,
    )
    if outcome["ok"] != outcome["rows"] or outcome["in_db"] != outcome["rows"]:
        print(f"  ! not every row was imported: {outcome}")


def tree_label(tree: Path) -> str:
    commit = subprocess.run(
        ["git", "-C", str(tree), "log", "-1", "--format=%h %s"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return f"{tree} ({commit[:70] or 'not a git checkout'})"


def summarise(fmt: str, rates: dict[str, list[float]]) -> None:
    medians = {tool: statistics.median(values) for tool, values in rates.items() if values}
    if BULKOPS not in medians:
        return
    ours = medians[BULKOPS]
    runs = len(rates[BULKOPS])
    print(f"\nsummary ({fmt}, median of {runs} run{'s' if runs > 1 else ''} each):")
    for tool, rate in medians.items():
        print(f"  {tool:<22} {rate:>9,.0f} rows/s")
    for tool in (COPY, BASELINE, IMPORT_EXPORT):
        if medians.get(tool):
            print(f"  ratio bulkops / {tool}: {ours / medians[tool]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--formats", default="csv,xlsx", help="comma-separated: csv, xlsx")
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs of bulkops, baseline and raw COPY, interleaved"
    )
    parser.add_argument("--chunk-size", type=int, default=1000)
    parser.add_argument(
        "--baseline-tree",
        help="another bulkops checkout (git worktree) whose engine runs beside this one",
    )
    parser.add_argument(
        "--baseline-python", help="its Python (default: <baseline-tree>/.venv/bin/python)"
    )
    parser.add_argument(
        "--ie-rows",
        type=int,
        default=20_000,
        help="rows given to django-import-export (0 = all); its rate is per row either way",
    )
    parser.add_argument("--skip-import-export", action="store_true")
    parser.add_argument("--skip-copy", action="store_true", help="no raw COPY comparison")
    parser.add_argument(
        "--profile", action="store_true", help="profile one bulkops run (needs pyinstrument)"
    )
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL") or DEFAULT_DB)
    parser.add_argument(
        "--child", choices=["bulkops", "copy", "import-export"], help=argparse.SUPPRESS
    )
    parser.add_argument("--tree", help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(args)
        return

    ensure_database(args.database_url)
    postgresql = args.database_url.startswith("postgres")
    print(f"database: {args.database_url}  rows: {args.rows:,}  python {sys.version.split()[0]}")
    print(f"bulkops:  {tree_label(ROOT)}")
    if args.baseline_tree:
        print(f"baseline: {tree_label(Path(args.baseline_tree).resolve())}")
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
            if args.profile:
                report(BULKOPS, fmt, run_child(BULKOPS, path, args, profile=True))
                continue
            tools = [BULKOPS]
            if args.baseline_tree:
                tools.append(BASELINE)
            if fmt == "csv" and postgresql and not args.skip_copy:
                tools.append(COPY)
            rates: dict[str, list[float]] = {tool: [] for tool in tools}
            for _ in range(max(1, args.repeat)):
                for tool in tools:
                    outcome = run_child(tool, path, args)
                    report(tool, fmt, outcome)
                    rates[tool].append(outcome["rate"])
            if not args.skip_import_export:
                outcome = run_child(IMPORT_EXPORT, path, args)
                report(IMPORT_EXPORT, fmt, outcome)
                rates[IMPORT_EXPORT] = [outcome["rate"]]
            summarise(fmt, rates)


if __name__ == "__main__":
    main()
