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
from django.db.models import Sum

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
            # json, not jsonb: the names only, without building each chunk's jsonb.
            f"SELECT DISTINCT json_object_keys(keys::json) FROM {table} "
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


def constraint_order(job: BulkJob) -> list[str]:
    """The job's constraints in the order their errors apply (``target`` first, then the
    serializer's unique constraints), as ``Batch.chunk_keys`` lists them."""
    names = set(constraint_names(job))
    first = job.chunks.exclude(keys="").order_by("index").values_list("keys", flat=True).first()
    order = [name for name in json.loads(first) if name in names] if first else []
    return order + sorted(names - set(order))


Member = tuple[int, int, Any]  # (position, chunk index, naming field or None)


def clashes(job: BulkJob, constraint: str) -> Iterator[list[Member]]:
    """Every key of ``constraint`` that rows of the job hold more than once: the rows
    holding it, as ``(position, chunk index, naming field)``, by ascending position."""
    connection = _db(job)
    table = BulkChunk._meta.db_table
    param = _job_param(connection, job)
    if connection.vendor == "postgresql":
        # Every entry once, then only the keys held twice grouped with their rows: the
        # members of the (many) unique keys are never aggregated. "C": the keys are
        # compared, not sorted for people (equal is byte-equal in any collation).
        sql = (
            'WITH k AS MATERIALIZED (SELECT (e->>0) COLLATE "C" AS key, e AS entry, '
            'c."index" AS chunk '
            f"FROM {table} c CROSS JOIN LATERAL jsonb_array_elements(c.keys::jsonb -> %s) e "
            "WHERE c.job_id = %s AND c.keys <> '') "
            "SELECT json_agg(json_build_array((entry->>1)::bigint, chunk, entry->2) "
            "ORDER BY (entry->>1)::bigint) FROM k "
            "WHERE key IN (SELECT key FROM k GROUP BY key HAVING count(*) > 1) GROUP BY key"
        )
        params: list[Any] = [constraint, param]
    elif connection.vendor == "sqlite":
        sql = (
            "SELECT '[' || group_concat(json_array(json_extract(e.value, '$[1]'), "
            "c.\"index\", json_extract(e.value, '$[2]'))) || ']' "
            f"FROM {table} c, json_each(c.keys, %s) e "
            "WHERE c.job_id = %s AND c.keys <> '' "
            "GROUP BY json_extract(e.value, '$[0]') HAVING count(*) > 1"
        )
        params = ['$."' + constraint.replace('"', '\\"') + '"', param]
    else:
        yield from _clashes_in_python(job, constraint)
        return
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        for (members,) in cursor.fetchall():
            if isinstance(members, str):
                members = json.loads(members)
            yield sorted((int(p), int(c), f) for p, c, f in members)


def _clashes_in_python(job: BulkJob, constraint: str) -> Iterator[list[Member]]:
    groups: dict[str, list[Member]] = {}
    chunks = job.chunks.exclude(keys="").values_list("index", "keys")
    for index, keys in chunks.iterator():
        for entry in json.loads(keys).get(constraint, ()):
            field = entry[2] if len(entry) > 2 else None
            groups.setdefault(entry[0], []).append((entry[1], index, field))
    for members in groups.values():
        if len(members) > 1:
            yield sorted(members)


def find_duplicates(job: BulkJob, batch: Any) -> dict[int, dict[int, dict[str, list]]]:
    """``{chunk index: {position: errors}}`` of every row whose key another row of the
    job holds too, worded by ``Batch.duplicate_errors``."""
    from .stages import is_file_job

    is_file_row = is_file_job(job)
    found: dict[int, dict[int, dict[str, list]]] = {}
    for constraint in constraint_order(job):
        for members in clashes(job, constraint):
            fields = {p: f for p, _, f in members if f is not None} or None
            errors = batch.duplicate_errors(
                constraint, [p for p, _, _ in members], is_file_row=is_file_row, fields=fields
            )
            chunk_of = {p: c for p, c, _ in members}
            for position, extra in errors.items():
                row = found.setdefault(chunk_of[position], {}).setdefault(position, {})
                for field, messages in extra.items():
                    kept = row.setdefault(field, [])
                    kept.extend(m for m in messages if m not in kept)
    return found


def apply_duplicates(job: BulkJob, batch: Any) -> None:
    """Find the duplicates and keep them on the chunks (``BulkChunk.duplicates``) and as
    row errors, replacing what an earlier check found."""
    from .stages import load_staged, row_error, using

    found = find_duplicates(job, batch)
    with transaction.atomic(using=using()):
        before = set(job.chunks.exclude(duplicates="").values_list("index", flat=True))
        for chunk in job.chunks.filter(index__in=before | set(found)).order_by("index"):
            old = {int(p) for p in json.loads(chunk.duplicates)} if chunk.duplicates else set()
            errors = found.get(chunk.index, {})
            chunk.duplicates = json.dumps(errors, separators=(",", ":")) if errors else ""
            staged = load_staged(batch, chunk)
            rows = {r.position: r for r in staged.rows}
            touched = [rows[p] for p in sorted(old | set(errors))]
            BulkRowError.objects.filter(
                job=job, index__in=[r.index for r in touched if not r.errors]
            ).delete()
            BulkRowError.objects.bulk_create(
                [row_error(job, r, r.errors) for r in touched if r.errors],
                update_conflicts=True,
                unique_fields=["job", "index"],
                update_fields=["errors", "values", "row", "ref"],
            )
            chunk.invalid = staged.invalid
            chunk.save(update_fields=["duplicates", "invalid"])
        invalid = job.chunks.aggregate(total=Sum("invalid"))["total"] or 0
        BulkJob.objects.filter(pk=job.pk).update(invalid_rows=invalid)
        job.invalid_rows = invalid
