"""Jobs made directly in the database, in the states the admin pages show.

The jobs service and its workers are tested in tests/jobs; here the admin's views are
under test, so a job is put in the state a view must render (validated with failed
rows, running, finished) without running a worker.
"""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from bulkops.jobs.models import BulkChunk, BulkJob, BulkRowError

HEADERS = ["SKU", "Name", "Category", "Unit price", "Qty"]
COLUMNS = {
    "SKU": "sku",
    "Name": "name",
    "Category": "category",
    "Unit price": "price",
    "Qty": "quantity",
}


def failed_row(index: int, **values: Any) -> dict[str, Any]:
    base = {
        "sku": f"B-{index}",
        "name": f"Bad {index}",
        "category": "Tools",
        "price": "-1",
        "quantity": "2",
    }
    return base | values


def make_job(
    user: Any,
    *,
    rows: int = 10,
    failed: list[dict[str, Any]] | None = None,
    errors: list[dict[str, list[str]]] | None = None,
    status: str = BulkJob.VALIDATED,
    **fields: Any,
) -> BulkJob:
    """An admin upload of ``rows`` product rows; ``failed`` are the rows that failed
    (spreadsheet rows 2, 3, ... with ``errors``, by default a negative price)."""
    failed = failed if failed is not None else []
    now = timezone.now()
    fields.setdefault("filename", "stock.xlsx")
    fields.setdefault("model", "catalog.product")
    job = BulkJob.objects.create(
        user=user,
        source=BulkJob.SOURCE_ADMIN,
        status=status,
        stage=BulkJob.STAGE_CONFIRM if status == BulkJob.VALIDATED else BulkJob.STAGE_DONE,
        mode="create",
        atomic="none",
        chunk_size=1000,
        confirm=True,
        storage="default",
        file_name="bulkops/jobs/x/stock.xlsx",
        total_rows=rows,
        rows_read=rows,
        rows_validated=rows,
        invalid_rows=len(failed),
        chunks_total=1,
        chunks_validated=1,
        options={"source": {"headers": HEADERS, "columns": COLUMNS, "format": "xlsx"}},
        started_at=now,
        validated_at=now,
        **fields,
    )
    BulkChunk.objects.create(
        job=job,
        index=0,
        start=0,
        size=rows,
        first_row=2,
        state=BulkChunk.VALIDATED,
        invalid=len(failed),
    )
    BulkRowError.objects.bulk_create(
        BulkRowError(
            job=job,
            index=position,
            row=position + 2,
            values=values,
            errors=(
                errors[position]
                if errors
                else {"price": ["Ensure this value is greater than or equal to 0."]}
            ),
        )
        for position, values in enumerate(failed)
    )
    return job
