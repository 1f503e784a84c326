"""Column validator vs DRF per row: ``to_internal_value`` over product rows, nothing else.

    python bench/columns.py --rows 200000
    python bench/columns.py --rows 200000 --cells typed  # spreadsheet cells: float, int, bool, date
    python bench/columns.py --rows 20000 --profile        # pyinstrument (pip install it) profile

Rows are shaped like bench/import_throughput.py's (20 repeating categories, a few
thousand prices, quantities 0-499, true/false, a few hundred dates; unique skus and
names). The serializer is ``ProductSerializer`` prepared as the engine prepares it
(related fields answered from a per-chunk map, unique validators taken off), and each
chunk of 1000 rows is validated by

- ``drf``: DRF's ``Serializer.to_internal_value``, row by row;
- ``engine``: the engine's per-row ``to_internal_value`` of today (steps resolved per batch);
- ``columns``: ``ColumnPlan.to_internal_values`` (bulkops/engine/columns.py).

Only that call is timed (making rows and the per-chunk category query are not). Each
runs in its own child process, so its peak RSS is its own; the tracemalloc peak of one
chunk's validation is printed too. The outcomes of all three are checked equal first.
The database (for the categories) is ``DATABASE_URL``, default a ``bulkops_bench``
database on the local PostgreSQL.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
import tracemalloc

from benchdb import ROOT, ensure_database, setup_django
from import_throughput import CATEGORIES, DEFAULT_DB, HEADERS, product_row

METHODS = ("drf", "engine", "columns")


def rows_of(start: int, stop: int, cells: str) -> list[dict]:
    rows = [dict(zip(HEADERS, product_row(i), strict=True)) for i in range(start, stop)]
    if cells == "typed":  # as a spreadsheet reader hands them over
        for row in rows:
            row["price"] = float(row["price"])
            row["quantity"] = int(row["quantity"])
            row["active"] = row["active"] == "true"
            row["released"] = datetime.date.fromisoformat(row["released"])
    return rows


def prepared_validator():
    """The engine's chunk validator: its serializer is the one the engine validates with."""
    from bulkops.engine.validate import ChunkValidator
    from project.catalog.models import Category
    from project.catalog.serializers import ProductSerializer

    Category.objects.bulk_create([Category(name=n) for n in CATEGORIES], ignore_conflicts=True)
    return ChunkValidator(serializer_class=ProductSerializer, mode="create")


def validate_with(method: str, validator):
    """A function validating one chunk's rows by ``method``; returns (valid, invalid)."""
    from rest_framework import serializers
    from rest_framework.exceptions import ValidationError

    from bulkops.engine.columns import ColumnPlan

    serializer = validator.serializer
    if method == "columns":
        plan = ColumnPlan.for_serializer(serializer)

        def run(rows):
            outcomes = plan.to_internal_values(rows)
            invalid = sum(1 for _, errors in outcomes if errors is not None)
            return len(rows) - invalid, invalid

        return run
    to_internal_value = (
        serializer.to_internal_value
        if method == "engine"
        else lambda row: serializers.Serializer.to_internal_value(serializer, row)
    )

    def run(rows):
        outcomes = []  # kept, as the columns run keeps its list
        for row in rows:
            try:
                outcomes.append((to_internal_value(row), None))
            except ValidationError as exc:
                outcomes.append((None, exc.detail))
        invalid = sum(1 for _, errors in outcomes if errors is not None)
        return len(rows) - invalid, invalid

    return run


def prefetch(validator, rows) -> None:
    for resolver in validator.relations:
        resolver.prefetch(rows)


def check_same_outcomes(validator, cells: str) -> None:
    """All three give the same outcome for a chunk with bad rows in it."""
    from rest_framework import serializers
    from rest_framework.exceptions import ValidationError

    from bulkops.engine.columns import ColumnPlan

    rows = rows_of(0, 1000, cells)
    for i, bad in enumerate(
        [{"price": "-1"}, {"quantity": "x"}, {"category": "Nope"}, {"sku": ""}, {"active": "?"}]
    ):
        rows[i * 97].update(bad)
    prefetch(validator, rows)
    serializer = validator.serializer
    expected = []
    for row in rows:
        try:
            expected.append((serializers.Serializer.to_internal_value(serializer, row), None))
        except ValidationError as exc:
            expected.append((None, exc.detail))
    got = ColumnPlan.for_serializer(serializer).to_internal_values(rows)
    if got != expected:
        raise SystemExit("columns and DRF disagree on the check chunk: this is a bug.")


def child_main(args: argparse.Namespace) -> None:
    setup_django(args.database_url)
    import resource

    validator = prepared_validator()
    check_same_outcomes(validator, args.cells)
    run = validate_with(args.child, validator)
    profiler = None
    if args.profile:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0005)
    seconds, valid, invalid = 0.0, 0, 0
    for start in range(0, args.rows, args.chunk_size):
        rows = rows_of(start, min(start + args.chunk_size, args.rows), args.cells)
        prefetch(validator, rows)
        if profiler:
            profiler.start()
        began = time.perf_counter()
        ok, bad = run(rows)
        seconds += time.perf_counter() - began
        if profiler:
            profiler.stop()
        valid, invalid = valid + ok, invalid + bad
    rows = rows_of(0, args.chunk_size, args.cells)
    prefetch(validator, rows)
    tracemalloc.start()
    run(rows)
    chunk_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    outcome = {
        "rows": valid + invalid,
        "invalid": invalid,
        "seconds": seconds,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "chunk_peak_kb": chunk_peak / 1024,
    }
    if profiler:
        print(profiler.output_text(unicode=False, color=False, show_all=False), file=sys.stderr)
    print(json.dumps(outcome))


def run_child(method: str, args: argparse.Namespace) -> dict:
    command = [
        sys.executable,
        __file__,
        "--child",
        method,
        "--rows",
        str(args.rows),
        "--chunk-size",
        str(args.chunk_size),
        "--cells",
        args.cells,
        "--database-url",
        args.database_url,
    ]
    if args.profile and method == "columns":
        command.append("--profile")
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"the {method} run failed (exit status {done.returncode}).")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--chunk-size", type=int, default=1000)
    parser.add_argument("--cells", choices=["text", "typed"], default="text")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--profile", action="store_true", help="pyinstrument, columns run")
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL") or DEFAULT_DB)
    parser.add_argument("--child", choices=METHODS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(args)
        return
    ensure_database(args.database_url)
    print(
        f"rows: {args.rows:,}  cells: {args.cells}  chunk: {args.chunk_size}  "
        f"python {sys.version.split()[0]}"
    )
    rates = {}
    for method in [m.strip() for m in args.methods.split(",") if m.strip()]:
        outcome = run_child(method, args)
        rates[method] = outcome["rows"] / outcome["seconds"]
        print(
            f"{method:<8} {outcome['rows']:>9,} rows  {outcome['seconds']:7.2f} s  "
            f"{rates[method]:>10,.0f} rows/s  peak RSS {outcome['rss_mb']:5.0f} MB  "
            f"one chunk's allocations {outcome['chunk_peak_kb']:7.0f} KB  "
            f"(invalid: {outcome['invalid']})"
        )
    if "columns" in rates:
        for other in ("drf", "engine"):
            if other in rates:
                print(f"ratio columns / {other}: {rates['columns'] / rates[other]:.2f}x")


if __name__ == "__main__":
    main()
