"""Signals of the jobs feature.

``job_finished(sender=BulkJob, job=...)`` is sent once when a job ends (completed,
partial, failed or cancelled), after the transaction that ended it committed. The
notification e-mail and ``BULKOPS["JOB_FINISHED"]`` hang on it.
"""

from django.dispatch import Signal

job_finished = Signal()
