"""Import a spreadsheet (CSV, TSV, XLSX, XLS, ODS, JSON) into a bulk-enabled model.

Every row is validated before any row is written. Exit status: 0 when every row
succeeded, 1 when any row failed (the summary still says what was written), 2 on
bad usage or a file that cannot be read (nothing is written).

Example: manage.py bulk_import catalog.Product products.xlsx --mode upsert -e failed.csv
"""

from __future__ import annotations

import functools
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

from django.apps import apps
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import reset_queries

from bulkops.engine import MODES, check_options, run_batch
from bulkops.engine.readers import open_rows
from bulkops.engine.readers.headers import normalise_header
from bulkops.errorfile import ErrorFileWriter, flatten_errors, format_for_path
from bulkops.exceptions import BulkOpsError
from bulkops.progress import ProgressBar, format_rate
from bulkops.registry import BulkModel, NotRegistered, registry
from bulkops.results import CREATED, DELETED, ERROR, ROLLED_BACK, UPDATED, RowResult

ERRORS_SHOWN = 10


def resolve_model(label: str) -> BulkModel:
    """The bulk-enabled model ``label`` names, or ``BulkOpsError`` saying what is."""
    try:
        return registry.get(label)
    except NotRegistered as exc:
        try:
            apps.get_model(label)
        except (LookupError, ValueError):
            enabled = ", ".join(entry.name for entry in registry) or "none"
            raise BulkOpsError(
                f"Unknown model {label!r}; bulk-enabled models are: {enabled}.",
                code="unknown_model",
            ) from None
        raise BulkOpsError(str(exc), code="not_registered") from None


def resolve_user(username: str | None) -> Any:
    if username is None:
        return None
    user_model = get_user_model()
    try:
        return user_model._default_manager.get_by_natural_key(username)
    except user_model.DoesNotExist:
        raise BulkOpsError(f"User {username!r} does not exist.", code="unknown_user") from None


class Interrupted(Exception):
    """Ctrl-C during the import; the message says what stays written."""


class Report:
    """What the command tells about failed rows: a count, the first few, the error file."""

    def __init__(self, error_file: ErrorFileWriter | None) -> None:
        self.error_file = error_file
        self.succeeded = 0
        self.failed = 0
        self.shown: list[str] = []

    def add(self, result: RowResult) -> None:
        if result.succeeded:
            self.succeeded += 1
        if result.status != ERROR:
            return
        self.failed += 1
        if len(self.shown) < ERRORS_SHOWN:
            where = f"row {result.row}" if result.row is not None else f"item {result.index}"
            self.shown.append(f"{where}: {flatten_errors(result.errors)}")
        if self.error_file is not None:
            self.error_file.write(result)


@contextmanager
def open_error_file(path: str | None, source: Any) -> Iterator[ErrorFileWriter | None]:
    """The ``--errors-out`` writer; the file is removed if the import could not run."""
    if path is None:
        yield None
        return
    try:
        fileobj = open(path, "wb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise BulkOpsError(f"Cannot write the errors file {path!r}: {exc.strerror}.") from None
    writer = None
    refused = False
    try:
        writer = ErrorFileWriter(
            fileobj, list(source.columns), source.columns, format=format_for_path(path)
        )
        yield writer
    except BulkOpsError:
        refused = True
        raise
    finally:
        if writer is not None and not refused:
            writer.close()
        fileobj.close()
        if refused:
            os.remove(path)


def report_progress(bar: ProgressBar, stage: str, done: int) -> None:
    # With DEBUG on, Django keeps the last 9,000 queries, each a chunk-sized INSERT.
    reset_queries()
    bar.update(stage, done)


def describe(source: Any, *, path: str, model: BulkModel, flags: str) -> str:
    """The line printed before importing: what is read, into what, which columns."""
    where = os.path.basename(path)
    if source.sheet:
        where += f", sheet {source.sheet!r}"
    if source.total_rows is not None:
        where += f" ({source.format.upper()}, {source.total_rows:,} rows)"
    else:
        where += f" ({source.format.upper()})"
    columns = ", ".join(
        header if normalise_header(header) == field else f"{header} -> {field}"
        for header, field in source.columns.items()
    )
    line = f"Importing {where} into {model.name}, {flags}: {columns}."
    if source.unknown_columns:
        line += f" Ignoring unknown columns: {', '.join(source.unknown_columns)}."
    return line


def summary_line(counts: dict[str, int], elapsed: float, *, dry_run: bool) -> str:
    total = sum(counts.values())
    timing = f"of {total:,} rows in {elapsed:.2f} s"
    timing += f" ({format_rate(total, elapsed)})." if total else "."
    if dry_run:
        return (
            f"Dry run, nothing written: would create {counts[CREATED]:,}, "
            f"update {counts[UPDATED]:,}, delete {counts[DELETED]:,}; "
            f"failed {counts[ERROR]:,}, would roll back {counts[ROLLED_BACK]:,} {timing}"
        )
    return (
        f"Created {counts[CREATED]:,}, updated {counts[UPDATED]:,}, "
        f"deleted {counts[DELETED]:,}, failed {counts[ERROR]:,}, "
        f"rolled back {counts[ROLLED_BACK]:,} {timing}"
    )


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("model", help="the model, as app_label.Model (catalog.Product)")
        parser.add_argument("file", help="the file to import")
        parser.add_argument(
            "--mode",
            "-m",
            default="create",
            metavar=f"{{{','.join(MODES)}}}",
            help="[create]",
        )
        parser.add_argument(
            "--atomic", "-a", metavar="{all,chunk,none}", help="[BULKOPS DEFAULT_ATOMIC]"
        )
        parser.add_argument(
            "--chunk-size", "-c", type=int, metavar="N", help="rows per chunk [BULKOPS CHUNK_SIZE]"
        )
        parser.add_argument("--dry-run", "-n", action="store_true", help="validate, write nothing")
        parser.add_argument(
            "--user", "-u", metavar="NAME", help="username put in the serializer context"
        )
        parser.add_argument(
            "--errors-out", "-e", metavar="PATH", help="write failed rows to this .csv or .xlsx"
        )
        parser.add_argument(
            "--sheet", "-s", metavar="NAME", help="the workbook sheet to read [the first]"
        )
        parser.add_argument(
            "--async",
            dest="run_async",
            action="store_true",
            help="enqueue a job, print its id and exit",
        )
        parser.add_argument(
            "--wait",
            "-w",
            action="store_true",
            help="with --async: show the job's progress until it ends, then exit as a sync run",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            failed = self.import_file(**options)
        except BulkOpsError as exc:
            self.fail(exc.message)
        except KeyboardInterrupt:
            self.fail("Interrupted; nothing was written.", 130)
        except Interrupted as exc:
            self.fail(str(exc), 130)
        if failed:
            sys.exit(1)

    def fail(self, message: str, status: int = 2) -> NoReturn:
        self.stderr.write(message)
        sys.exit(status)

    def import_file(
        self,
        *,
        model: str,
        file: str,
        mode: str,
        atomic: str | None,
        chunk_size: int | None,
        dry_run: bool,
        user: str | None,
        errors_out: str | None,
        sheet: str | None,
        run_async: bool,
        wait: bool,
        verbosity: int,
        **options: Any,
    ) -> bool:
        """Run the import and print what happened; did any row fail?"""
        bulk_model = resolve_model(model)
        serializer_class = bulk_model.serializer_class
        atomic, chunk_size = check_options(mode=mode, atomic=atomic, chunk_size=chunk_size)
        context = {"request": None, "user": resolve_user(user)}
        if not os.path.isfile(file):
            raise BulkOpsError(f"File {file!r} does not exist.", code="not_found")
        if errors_out and os.path.abspath(errors_out) == os.path.abspath(file):
            raise BulkOpsError("--errors-out must name another file than the one imported.")
        if run_async or wait:  # a job, run by the RQ workers (bulkops.jobs)
            from bulkops.jobs.cli import import_async

            return import_async(
                self,
                model=model,
                file=file,
                mode=mode,
                atomic=atomic,
                chunk_size=chunk_size,
                dry_run=dry_run,
                user=context["user"],
                errors_out=errors_out,
                sheet=sheet,
                wait=wait,
                verbosity=verbosity,
            )
        source = open_rows(
            file,
            filename=os.path.basename(file),
            serializer=serializer_class(context=context),
            mode=mode,
            natural_key=bulk_model.natural_key,
            sheet=sheet,
        )
        with source, open_error_file(errors_out, source) as error_file:
            if verbosity:
                flags = f"mode {mode}, atomic {atomic}" + (", dry run" if dry_run else "")
                self.stdout.write(describe(source, path=file, model=bulk_model, flags=flags))
            report = Report(error_file)
            bar = ProgressBar(options.get("stderr") or sys.stderr, total=source.total_rows)
            bar.enabled = bar.enabled and verbosity > 0
            bar.update("validate", 0)
            started = time.monotonic()
            try:
                result = run_batch(
                    serializer_class=serializer_class,
                    rows=source,
                    mode=mode,
                    natural_key=bulk_model.natural_key,
                    atomic=atomic,
                    chunk_size=chunk_size,
                    dry_run=dry_run,
                    context=context,
                    keep_results=False,
                    with_data=False,
                    on_row=report.add,
                    on_progress=functools.partial(report_progress, bar),
                )
            except KeyboardInterrupt:
                # Results are reported once their chunk committed (atomic all: the batch).
                written = 0 if dry_run else report.succeeded
                if not written:
                    raise
                raise Interrupted(
                    f"Interrupted; {written:,} rows were written before and stay written."
                ) from None
            finally:
                bar.finish()
            elapsed = time.monotonic() - started
        if verbosity:
            self.print_report(result.counts, elapsed, report, dry_run, atomic, errors_out)
        return result.failed > 0

    def print_report(
        self,
        counts: dict[str, int],
        elapsed: float,
        report: Report,
        dry_run: bool,
        atomic: str,
        errors_out: str | None,
    ) -> None:
        ok = counts[ERROR] == 0 and counts[ROLLED_BACK] == 0
        style = self.style.SUCCESS if ok else self.style.WARNING
        self.stdout.write(summary_line(counts, elapsed, dry_run=dry_run), style)
        for line in report.shown:
            self.stdout.write(f"  {line}")
        if report.failed > len(report.shown):
            self.stdout.write(f"  ... and {report.failed - len(report.shown):,} more failed rows.")
        if counts[ROLLED_BACK]:
            scope = "the whole import" if atomic == "all" else "its chunk"
            were = "would be" if dry_run else "were"
            self.stdout.write(
                f"Valid rows {were} rolled back: with --atomic {atomic}, one failed row "
                f"rolls back {scope}."
            )
        if report.failed and errors_out:
            self.stdout.write(f"Failed rows and their errors are in {errors_out}.")
        elif report.failed:
            self.stdout.write(
                "Add --errors-out failed.csv to get every failed row with its errors."
            )
