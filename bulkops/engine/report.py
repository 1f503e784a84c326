"""A written (or rolled back) chunk's rows as ``RowResult``s, in order, with their data."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..results import CREATED, DELETED, ERROR, ROLLED_BACK, UPDATED, RowResult
from .options import CREATE, DELETE, UPDATE
from .staged import StagedChunk

if TYPE_CHECKING:
    from .write import Written

STATUS = {CREATE: CREATED, UPDATE: UPDATED, DELETE: DELETED}


def chunk_results(
    staged: StagedChunk,
    written: Written,
    *,
    rolled_back: bool,
    dry_run: bool,
    data: dict[int, Any] | None = None,
) -> list[RowResult]:
    """Every row's result once the chunk's outcome is final: its errors (from validation
    or the database's refusal), ``rolled_back``, or what was done, with the id and
    ``data`` of the object. A dry run's new rows have no id."""
    out = []
    refused = written.refused
    ids = written.ids
    for row in staged.rows:
        errors = row.errors if row.errors is not None else refused.get(row.index)
        if errors is not None:
            out.append(
                RowResult(row.index, ERROR, row.row, row.ref, errors=errors, values=row.source)
            )
        elif rolled_back:
            out.append(RowResult(row.index, ROLLED_BACK, row.row, row.ref))
        else:
            action = row.action
            pk = ids.get(row.index) if action == CREATE else row.pk
            if dry_run and action == CREATE:
                pk = None
            shown = data.get(row.index) if data else None
            out.append(RowResult(row.index, STATUS[action], row.row, row.ref, pk, shown))  # type: ignore[index]
    return out


def rendered(
    serializer_class: Any,
    context: dict[str, Any],
    staged: StagedChunk,
    written: Written,
    objects: dict[int, Any],
) -> dict[int, Any]:
    """The serializer's output for every written row: ``{index: data}``, one
    ``many=True`` pass over the chunk."""
    shown = [
        row.index
        for row in staged.rows
        if row.errors is None and row.index not in written.refused and row.index in objects
    ]
    if not shown:
        return {}
    data = serializer_class([objects[index] for index in shown], many=True, context=context).data
    return dict(zip(shown, data, strict=True))
