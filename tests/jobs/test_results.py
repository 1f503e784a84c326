"""Every row's result rebuilt from chunk outcomes and row errors, in row order."""

import pytest

from bulkops.jobs.models import BulkChunk, BulkJob, BulkRowError
from bulkops.jobs.results import iter_results, result_counts
from tests.jobs.factories import make_job

pytestmark = pytest.mark.django_db


@pytest.fixture
def job():
    """Rows 2..13 of a file in 3 chunks of 4: chunk 0 written (2 created, 1 updated,
    1 error), chunk 1 written with a gap in its row numbers, chunk 2 never written."""
    job = make_job(
        chunks=3, chunk_size=4, status=BulkJob.CANCELLED, mode="upsert", file_name="x.csv"
    )
    BulkChunk.objects.filter(job=job, index=0).update(
        first_row=2, state=BulkChunk.DONE, created=2, updated=1, errors=1,
        outcome={"s": "cuec", "ids": [10, 11, 12], "rows": None, "refs": None},
    )  # fmt: skip
    BulkChunk.objects.filter(job=job, index=1).update(
        first_row=6, state=BulkChunk.DONE, rolled_back=4,
        outcome={"s": "rrrr", "ids": [], "rows": [6, 7, 9, 10], "refs": None},
    )  # fmt: skip
    BulkChunk.objects.filter(job=job, index=2).update(first_row=11, state=BulkChunk.VALIDATED)
    BulkRowError.objects.create(job=job, index=2, row=4, values={"sku": ""}, errors={"sku": ["!"]})
    BulkRowError.objects.create(job=job, index=9, row=12, values={"sku": "A"}, errors={"x": ["?"]})
    BulkJob.objects.filter(pk=job.pk).update(
        created=2, updated=1, errors=2, rolled_back=4, unprocessed=3
    )
    job.refresh_from_db()
    return job


def test_every_row_has_one_result_in_order(job):
    results = list(iter_results(job))
    assert [(r.index, r.row, r.status, r.id) for r in results] == [
        (0, 2, "created", 10),
        (1, 3, "updated", 11),
        (2, 4, "error", None),
        (3, 5, "created", 12),
        (4, 6, "rolled_back", None),
        (5, 7, "rolled_back", None),
        (6, 9, "rolled_back", None),
        (7, 10, "rolled_back", None),
        (8, 11, "unprocessed", None),
        (9, 12, "error", None),
        (10, 13, "unprocessed", None),
        (11, 14, "unprocessed", None),
    ]
    assert results[2].as_dict() == {
        "index": 2,
        "row": 4,
        "status": "error",
        "errors": {"sku": ["!"]},
    }
    assert results[2].values == {"sku": ""}


@pytest.mark.parametrize(
    ("status", "indexes"),
    [
        ("created", [0, 3]),
        ("error", [2, 9]),
        ("rolled_back", [4, 5, 6, 7]),
        ("unprocessed", [8, 10, 11]),
        ("deleted", []),
    ],
)
def test_results_filtered_by_status(job, status, indexes):
    assert [r.index for r in iter_results(job, status=status)] == indexes
    assert result_counts(job)[status] == len(indexes)


def test_a_page_starts_anywhere(job):
    assert [r.index for r in iter_results(job, start=5)] == [5, 6, 7, 8, 9, 10, 11]
    assert [r.index for r in iter_results(job, status="rolled_back", start=3)] == [7]
    assert [r.index for r in iter_results(job, status="error", start=1)] == [9]


def test_an_unknown_status_is_refused(job):
    with pytest.raises(ValueError, match="Unknown status 'replayed'"):
        list(iter_results(job, status="replayed"))
