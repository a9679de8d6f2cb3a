"""Cancel through the API and real RQ workers: after it no provider call starts, the call in flight is
stored with its cost, the rest are pending again and can be generated again at once, RQ shows the
waiting jobs as canceled, and no other task is touched."""

import pytest
from rq.registry import CanceledJobRegistry, FailedJobRegistry

from jobs.connection import get_queue
from jobs.engine import done_job_id, item_job_ids
from models import AITaskLog, ImageAttempt, db
from tests import factories
from tests.api_helpers import ApiClient
from tests.conftest import WorkerProcess, login, wait_for
from tests.flow import generate, new_article, parked_queue, progress, use_provider, wait_done

pytestmark = pytest.mark.worker

PRICE = 0.05


def cancel_url(task_id):
    return f"/v1/system/tasks/{task_id}/cancel/"


@pytest.fixture
def api(client, personas, redis_conn, own_queue):
    """The tests start their own workers on their own queue."""
    return ApiClient(client, personas.owner)


def priced(api, fake, **extra):
    use_provider(api, "openai_compatible", "flux-local", fake, price_per_image=str(PRICE), **extra)


def wait_ended(api, task_id, timeout=60):
    return wait_for(lambda: (v := progress(api, task_id))["state"] in ("done", "failed", "canceled") and v,
                    timeout=timeout, message=f"task {task_id} to end")


def test_cancel_stops_new_calls_stores_the_one_in_flight_and_lets_the_rest_go(api, fake_compatible, redis_conn):
    priced(api, fake_compatible, max_concurrent_calls=1)
    fake_compatible.set_load(latency=2.0)
    ids = new_article(prompts=("one", "two", "three", "four"))
    workers = [WorkerProcess(f"cancel-{n}") for n in range(2)]
    try:
        task_id = generate(api, ids)
        wait_for(lambda: len(fake_compatible.calls) == 1, timeout=30, message="the first call")
        answer = api.post(cancel_url(task_id))
        assert answer.status_code == 200, answer.get_json()
        assert answer.get_json() == {"success": True, "not_started": 3, "in_flight": 1}
        canceling = progress(api, task_id)
        assert canceling["canceling"] and canceling["state"] == "running"
        assert canceling["message"].startswith("Canceling: 1 image in flight will finish and be stored")
        final = wait_ended(api, task_id)
        assert final["state"] == "canceled" and not final["canceling"]
        assert final["message"] == "Canceled: 1 image generated, 3 not started"
        assert len(fake_compatible.calls) == 1  # no call started after the cancel
        by_id = {i["id"]: i for i in final["images"]}
        assert by_id[ids[0]]["status"] == "generated" and by_id[ids[0]]["cost"] == pytest.approx(PRICE)
        assert [by_id[i]["status"] for i in ids[1:]] == ["pending"] * 3
        assert final["totals"] == {"total": 4, "generated": 1, "failed": 0, "not_started": 3, "skipped": 0,
                                   "cost": pytest.approx(PRICE)}
        rows = factories.images(ids)
        assert [r.status for r in rows] == ["generated", "pending", "pending", "pending"]
        assert all(r.error is None for r in rows)  # canceled is not an error
        with db.connection_context():
            task = AITaskLog.get(AITaskLog.task_id == task_id)
            outcomes = {a.image_id: a.outcome for a in ImageAttempt.select().where(ImageAttempt.task_id == task_id)}
        assert outcomes == {ids[0]: "generated", ids[1]: "canceled", ids[2]: "canceled", ids[3]: "canceled"}
        assert task.state == "canceled" and task.step_logs[-1]["message"] == final["message"]
        # Ops see the waiting jobs as canceled in RQ, not failed.
        queue = get_queue()
        canceled = set(CanceledJobRegistry(queue.name, connection=redis_conn).get_job_ids())
        job_ids = item_job_ids(task)
        assert {job_ids[i] for i in ids[1:]} | {done_job_id(task_id)} <= canceled
        assert FailedJobRegistry(queue.name, connection=redis_conn).get_job_ids() == []
        # Canceling again is a conflict: the task has ended.
        again = api.post(cancel_url(task_id))
        assert again.status_code == 409 and again.get_json()["type"] == "Conflict"
        # The same images can be generated again right away.
        fake_compatible.set_load(latency=0)
        retry = wait_done(api, generate(api, ids[1:]))
        assert retry["state"] == "done" and retry["totals"]["generated"] == 3
    finally:
        for worker in workers:
            worker.stop()
    assert len(fake_compatible.calls) == 4


def test_canceling_one_task_touches_neither_another_task_of_the_account_nor_another_account(
        api, client, personas, fake_compatible):
    other = ApiClient(client.application.test_client(), personas.outsider)
    priced(api, fake_compatible, max_concurrent_calls=2)
    priced(other, fake_compatible, max_concurrent_calls=2)
    fake_compatible.set_load(latency=0.8)
    doomed = new_article(prompts=tuple(f"doomed {n}" for n in range(4)))
    kept = new_article(prompts=tuple(f"kept {n}" for n in range(3)))
    theirs = new_article(prompts=tuple(f"theirs {n}" for n in range(3)), account="B")
    workers = [WorkerProcess(f"three-{n}") for n in range(4)]
    try:
        doomed_task, kept_task = generate(api, doomed), generate(api, kept)
        their_task = generate(other, theirs)
        wait_for(lambda: any("doomed" in c.prompt for c in fake_compatible.calls), timeout=30,
                 message="the doomed task's first call")
        assert api.post(cancel_url(doomed_task)).status_code == 200
        # The outsider cannot cancel A's task, nor A the outsider's: each is a 404, like a missing one.
        assert other.post(cancel_url(kept_task)).status_code == 404
        assert api.post(cancel_url(their_task)).status_code == 404
        assert api.post(cancel_url("0" * 32)).status_code == 404
        doomed_final = wait_ended(api, doomed_task)
        kept_final, their_final = wait_done(api, kept_task), wait_done(other, their_task)
    finally:
        for worker in workers:
            worker.stop()
    assert doomed_final["state"] == "canceled" and doomed_final["totals"]["not_started"] >= 1
    assert kept_final["state"] == "done" and kept_final["totals"]["generated"] == 3
    assert their_final["state"] == "done" and their_final["totals"]["generated"] == 3
    started = doomed_final["totals"]["generated"]
    assert sum("doomed" in c.prompt for c in fake_compatible.calls) == started


def test_a_task_canceled_before_its_parent_ran_ends_at_once_and_its_jobs_are_canceled(
        api, client, personas, fake_compatible, redis_conn, monkeypatch):
    priced(api, fake_compatible)
    queue = parked_queue(redis_conn)  # no worker: the parent job waits
    monkeypatch.setenv("RQ_QUEUE", queue.name)
    ids = new_article()
    task_id = generate(api, ids)
    assert api.post(cancel_url(task_id)).get_json() == {"success": True, "not_started": 3, "in_flight": 0}
    view = progress(api, task_id)
    assert view["state"] == "canceled" and view["message"] == "Canceled: 0 images generated, 3 not started"
    assert {i.status for i in factories.images(ids)} == {"pending"}
    assert task_id in CanceledJobRegistry(queue.name, connection=redis_conn).get_job_ids()
    assert len(queue) == 0
    assert fake_compatible.calls == []
    # Ops find it under "canceled" in rq-dashboard, not among the failed jobs.
    dashboard = client.application.test_client()
    login(dashboard, personas.admin)
    listed = dashboard.get(f"/rq/0/data/jobs/{queue.name}/canceled/8/asc/1.json").get_json()
    assert [job["id"] for job in listed["jobs"]] == [task_id]
    failed = dashboard.get(f"/rq/0/data/jobs/{queue.name}/failed/8/asc/1.json").get_json()
    assert failed["jobs"] == []


def test_a_job_that_reaches_the_call_gate_after_a_cancel_makes_no_call(api, fake_compatible, redis_conn):
    """The race a cancel cannot see: an image's job begins just after the cancel let the task's images
    go. Here the task is marked canceled without letting anything go, while the second image's job
    waits in RQ for the key's one slot: the gate, which every call passes, finds the task canceled."""
    from rq.job import Job

    from models import utcnow

    priced(api, fake_compatible, max_concurrent_calls=1)
    fake_compatible.set_load(latency=1.5)
    ids = new_article(prompts=("one", "two"))
    worker = WorkerProcess("gate")
    try:
        task_id = generate(api, ids)
        wait_for(lambda: len(fake_compatible.calls) == 1, timeout=30, message="the first call")
        with db.connection_context():
            AITaskLog.update(canceled_at=utcnow()).where(AITaskLog.task_id == task_id).execute()
            job_id = item_job_ids(AITaskLog.get(AITaskLog.task_id == task_id))[ids[1]]
        final = wait_ended(api, task_id)
        job = Job.fetch(job_id, connection=redis_conn)
        wait_for(lambda: job.get_status() == "finished", timeout=30, message="the second job to end")
    finally:
        worker.stop()
    assert job.return_value() == {"success": True, "skipped": True, "canceled": True}
    assert len(fake_compatible.calls) == 1
    assert final["state"] == "canceled" and final["message"] == "Canceled: 1 image generated, 1 not started"
    assert factories.image(ids[1]).status == "pending"
    with db.connection_context():
        outcomes = [a.outcome for a in ImageAttempt.select().where(ImageAttempt.image_id == ids[1])]
    assert outcomes == ["canceled"]
