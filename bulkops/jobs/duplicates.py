"""Duplicates across chunks, found once every chunk is validated.

Each validated chunk keeps the batch keys of its rows (``Batch.chunk_keys``) as JSON.
One query per constraint groups every chunk's keys and names the positions of keys held
more than once; ``Batch.duplicate_errors`` words those rows' errors exactly as the
synchronous engine does. The errors are kept on the chunk (``BulkChunk.duplicates``),
apart from its staged rows, so the check can run again after rows were edited
(``revalidate_rows``) without counting an old clash twice.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from django.db import connections, transaction

from .models import BulkChunk, BulkJob, BulkRowError


def _db(job: BulkJob) -> Any:
    from .stages import using

    return connections[using()]


def _job_param(connection: Any, job: BulkJob) -> Any:
    return BulkJob._meta.pk.get_db_prep_value(job.pk, connection)


def constraint_names(job: BulkJob) -> list[str]:
    connection = _db(job)
    table = BulkChunk._meta.db_table
    if connection.vendor == "postgresql":
        sql = (
            f"SELECT DISTINCT jsonb_object_keys(keys::jsonb) FROM {table} "
            "WHERE job_id = %s AND keys <> ''"
        )
    elif connection.vendor == "sqlite":
        sql = (
            f"SELECT DISTINCT j.key FROM {table} c, json_each(c.keys) j "
            "WHERE c.job_id = %s AND c.keys <> ''"
        )
    else:
        names: set[str] = set()
        for keys in job.chunks.exclude(keys="").values_list("keys", flat=True).iterator():
            names.update(json.loads(keys))
        return sorted(names)
    with connection.cursor() as cursor:
        cursor.execute(sql, [_job_param(connection, job)])
        return sorted(row[0] for row in cursor.fetchall())


def clashes(job: BulkJob, constraint: str) -> Iterator[list[int]]:
    """The positions of each key of ``constraint`` that rows of the job hold more than
    once, ascending, one list per key."""
    connection = _db(job)
    table = BulkChunk._meta.db_table
    param = _job_param(connection, job)
    if connection.vendor == "postgresql":
        sql = (
            "SELECT array_agg((e->>1)::bigint ORDER BY (e->>1)::bigint) "
            f"FROM {table} c CROSS JOIN LATERAL jsonb_array_elements(c.keys::jsonb -> %s) e "
            "WHERE c.job_id = %s AND c.keys <> '' "
            "GROUP BY e->>0 HAVING count(*) > 1"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, [constraint, param])
            for (positions,) in cursor.fetchall():
                yield list(positions)
        return
    if connection.vendor == "sqlite":
        path = '$."' + constraint.replace('"', '\\"') + '"'
        sql = (
            "SELECT group_concat(json_extract(e.value, '$[1]')) "
            f"FROM {table} c, json_each(c.keys, %s) e "
            "WHERE c.job_id = %s AND c.keys <> '' "
            "GROUP BY json_extract(e.value, '$[0]') HAVING count(*) > 1"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, [path, param])
            for (positions,) in cursor.fetchall():
                yield sorted(int(p) for p in str(positions).split(","))
        return
    groups: dict[str, list[int]] = {}
    for keys in job.chunks.exclude(keys="").values_list("keys", flat=True).iterator():
        for key, position in json.loads(keys).get(constraint, ()):
            groups.setdefault(key, []).append(position)
    for positions in groups.values():
        if len(positions) > 1:
            yield sorted(positions)


def find_duplicates(job: BulkJob, batch: Any) -> dict[int, dict[str, list]]:
    """``{position: errors}`` of every row whose key rows of other chunks hold too."""
    from .stages import is_file_job

    size = job.chunk_size
    found: dict[int, dict[str, list]] = {}
    for constraint in constraint_names(job):
        for positions in clashes(job, constraint):
            if len({p // size for p in positions}) < 2:
                continue  # inside one chunk: its validation reported it already
            errors = batch.duplicate_errors(constraint, positions, is_file_row=is_file_job(job))
            for position, fields in errors.items():
                row = found.setdefault(position, {})
                for field, messages in fields.items():
                    row.setdefault(field, []).extend(messages)
    return found


def apply_duplicates(job: BulkJob, batch: Any) -> None:
    """Find the duplicates across chunks and keep them on the chunks and as row errors,
    replacing what an earlier check found."""
    from .stages import load_staged, row_error, using

    found = find_duplicates(job, batch)
    size = job.chunk_size
    by_chunk: dict[int, dict[int, dict]] = {}
    for position, errors in found.items():
        by_chunk.setdefault(position // size, {})[position] = errors
    with transaction.atomic(using=using()):
        before = set(job.chunks.exclude(duplicates="").values_list("index", flat=True))
        for chunk in job.chunks.filter(index__in=before | set(by_chunk)).order_by("index"):
            old = set(json.loads(chunk.duplicates)) if chunk.duplicates else set()
            errors = by_chunk.get(chunk.index, {})
            chunk.duplicates = json.dumps(errors, separators=(",", ":")) if errors else ""
            staged = load_staged(batch, chunk)
            rows = {r.index: r for r in staged.rows}
            touched = {int(p) for p in old} | set(errors)
            stale = [i for i in touched if not rows[i].errors]
            fresh = [row_error(job, rows[i], rows[i].errors) for i in touched if rows[i].errors]
            BulkRowError.objects.filter(job=job, index__in=stale).delete()
            BulkRowError.objects.bulk_create(
                fresh,
                update_conflicts=True,
                unique_fields=["job", "index"],
                update_fields=["errors", "values", "row", "ref"],
            )
            chunk.invalid = sum(1 for r in staged.rows if r.errors)
            chunk.save(update_fields=["duplicates", "invalid"])
        invalid = sum(job.chunks.values_list("invalid", flat=True))
        BulkJob.objects.filter(pk=job.pk).update(invalid_rows=invalid)
        job.invalid_rows = invalid
