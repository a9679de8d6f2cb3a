"""RQ does the scheduling (RateLimit per provider key): through real worker processes, a waiting image
holds no worker, calls run in run order, never more at once than the key allows, and a small account is
not stuck behind a big one."""

import re

import pytest
from rq.rate_limit import RateLimitRegistry

from jobs.limits import Limits, rq_key
from models import AITaskLog, db
from tests import factories
from tests.api_helpers import ApiClient
from tests.conftest import WorkerProcess, wait_for
from tests.flow import generate, progress, use_provider, wait_done

pytestmark = pytest.mark.worker


@pytest.fixture
def api(client, personas, redis_conn, own_queue):
    """Every test here starts its own workers on its own queue."""
    return ApiClient(client, personas.owner)


def articles(account: str, count: int, per_article: int = 4) -> list[int]:
    with db.connection_context():
        account_id = factories.account_id(account)
        prompts = [tuple(f"picture-{account}-{n}-{k}" for k in range(per_article)) for n in range(count)]
        return [i for n in range(count) for i in factories.article(account_id, title=f"{account} {n}",
                                                                   prompts=prompts[n])[1]]


def test_200_waiting_images_hold_no_worker_and_a_second_account_goes_through(api, client, personas,
                                                                            fake_openai, redis_conn):
    use_provider(api, "openai", "gpt-image-2", fake_openai, max_concurrent_calls=1)
    other = ApiClient(client.application.test_client(), personas.outsider)
    use_provider(other, "openai", "gpt-image-2", fake_openai, max_concurrent_calls=1)
    big, small = articles("A", 50), articles("B", 1, per_article=3)
    assert len(big) == 200
    workers = [WorkerProcess(f"three-{n}") for n in range(3)]  # three processes for everything
    try:
        big_task = generate(api, big)
        wait_for(lambda: progress(api, big_task)["totals"]["generated"] >= 5, timeout=60, message="A under way")
        with db.connection_context():
            account_a = factories.account_id("A")
        registry = RateLimitRegistry(rq_key(Limits(f"{account_a}:openai")), connection=redis_conn)
        # A's other images wait in RQ, not in a worker: at most one of its jobs is let through at a time.
        assert registry.get_allowed_job_count() <= 1 and registry.get_rate_limited_job_count() > 100
        small_task = generate(other, small)
        small_final = wait_done(other, small_task, timeout=60)
        assert small_final["totals"]["generated"] == 3
        # B went through while most of A's 200 were still waiting for A's one call at a time.
        assert progress(api, big_task)["totals"]["generated"] < 150
        big_final = wait_done(api, big_task, timeout=240)
    finally:
        for worker in workers:
            worker.stop()
    assert big_final["totals"]["generated"] == 200
    # A's calls were made one at a time, in run order (featured first, then by article and position).
    with db.connection_context():
        run_order = AITaskLog.get(AITaskLog.task_id == big_task).item_ids
    prompts = {image.id: image.prompt for image in factories.images(big)}
    a_calls = [m.group(0) for c in fake_openai.calls if (m := re.search(r"picture-A-\d+-\d+", c.prompt))]
    assert a_calls == [prompts[i] for i in run_order]


def test_a_key_never_has_more_calls_at_once_than_it_allows(api, fake_openai):
    use_provider(api, "openai", "gpt-image-2", fake_openai, max_concurrent_calls=2)
    fake_openai.set_load(latency=0.4, max_concurrent=2)  # the provider's own limit: a 429 beyond it
    ids = articles("A", 2)
    workers = [WorkerProcess(f"cap-{n}") for n in range(4)]
    try:
        final = wait_done(api, generate(api, ids), timeout=60)
    finally:
        for worker in workers:
            worker.stop()
    assert final["totals"]["generated"] == 8
    assert fake_openai.load.peak == 2 and fake_openai.load.rejected == 0
