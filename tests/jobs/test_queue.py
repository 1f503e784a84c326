"""Sending tasks to RQ: deterministic ids, on commit, never queued twice."""

import pytest
from django.db import transaction

from bulkops.jobs.queue import Task, dispatch, get_queue, send, task_id, task_statuses


def test_task_ids_name_job_stage_and_chunk():
    assert task_id("j1", "validate", 3) == "bulkops_j1_validate_3"
    assert task_id("j1", "write") == "bulkops_j1_write_all"
    assert Task("write_chunk", "j1", "write", 7).args == ("j1", 7)
    assert Task("read_source", "j1", "read").args == ("j1",)


def test_a_task_waiting_in_the_queue_is_not_queued_again(rq_queue):
    tasks = [Task("validate_chunk", "job-a", "validate", i) for i in range(3)]
    send(tasks)
    send(tasks[:2])
    send(tasks, force=True)  # force replaces started tasks, never waiting ones
    queue = get_queue()
    assert queue.name == rq_queue
    assert sorted(queue.job_ids) == sorted(t.id for t in tasks)
    assert set(task_statuses([t.id for t in tasks]).values()) == {"queued"}


def test_a_failed_task_is_queued_again(rq_queue):
    task = Task("write_chunk", "job-b", "write", 0)
    send([task])
    queue = get_queue()
    queue.connection.lpop(queue.key)  # a worker took it ...
    queue.connection.hset(f"rq:job:{task.id}", "status", "failed")  # ... and it failed
    assert queue.job_ids == []
    send([task])
    assert queue.job_ids == [task.id]
    assert task_statuses([task.id]) == {task.id: "queued"}


def test_a_started_task_is_replaced_only_when_forced(rq_queue):
    task = Task("write_chunk", "job-c", "write", 1)
    send([task])
    queue = get_queue()
    queue.connection.lpop(queue.key)
    queue.connection.hset(f"rq:job:{task.id}", "status", "started")
    send([task])
    assert queue.job_ids == []
    send([task], force=True)
    assert queue.job_ids == [task.id]


@pytest.mark.django_db(transaction=True)
def test_tasks_are_sent_when_the_transaction_commits(rq_queue):
    queue = get_queue()
    with transaction.atomic():
        dispatch([Task("read_source", "job-d", "read")])
        assert queue.job_ids == []
    assert queue.job_ids == ["bulkops_job-d_read_all"]


@pytest.mark.django_db(transaction=True)
def test_tasks_of_a_rolled_back_transaction_are_never_sent(rq_queue):
    queue = get_queue()
    with pytest.raises(RuntimeError), transaction.atomic():
        dispatch([Task("read_source", "job-e", "read")])
        raise RuntimeError
    assert queue.job_ids == []


@pytest.mark.django_db(transaction=True)  # the worker looks after its connection per task
def test_a_bulkworker_runs_tasks_with_rarer_young_collections(rq_queue):
    import gc

    from bulkops.engine.collection import YOUNG_THRESHOLD
    from bulkops.jobs import worker as worker_module
    from bulkops.jobs.worker import BulkWorker

    queue = get_queue()
    task = queue.enqueue("gc.get_threshold")
    before = gc.get_threshold()
    worker = BulkWorker([queue], connection=queue.connection)
    try:
        worker.work(burst=True)
    finally:
        gc.unfreeze()  # work() froze this test process's objects
        worker_module.KEEPS_CONNECTIONS = False

    assert task.return_value()[0] == YOUNG_THRESHOLD
    assert gc.get_threshold() == before  # as they were once the worker stopped


def test_a_bulkworker_renews_its_record_at_most_once_a_second(rq_queue, monkeypatch):
    from rq.worker import SimpleWorker

    from bulkops.jobs.worker import BulkWorker

    queue = get_queue()
    worker = BulkWorker([queue], connection=queue.connection)
    sent = []
    monkeypatch.setattr(SimpleWorker, "heartbeat", lambda self, t=None, p=None: sent.append(t))
    for _ in range(5):
        worker.heartbeat()
    worker.heartbeat(timeout=90)  # an explicit TTL (a task's) always goes through
    assert sent == [None, 90]
    monkeypatch.setattr(BulkWorker, "HEARTBEAT_EVERY", 0.0)
    worker.heartbeat()
    assert sent == [None, 90, None]
