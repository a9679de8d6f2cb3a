"""The per-key checks inside an admitted image job, on a real Redis: calls per minute, 429 pauses,
blocked keys and the adaptive ("auto") concurrency RQ admits jobs by."""

import time

import pytest
from rq import Queue
from rq.rate_limit import RateLimitRegistry

from jobs import limits
from jobs.ai_core import AICore
from jobs.limits import KeyLimiter, Limits, rate_limit, rq_key
from jobs.providers.base import ProviderError


@pytest.fixture
def key(redis_conn, request):
    return f"test-{request.node.name}-{time.time_ns()}"


def test_calls_per_minute_make_the_next_call_wait_for_the_window(redis_conn, key):
    waits = []
    limiter = KeyLimiter(redis_conn, Limits(key, max_concurrent=5, per_minute=2),
                         sleep=lambda seconds: (waits.append(seconds), time.sleep(seconds)))
    assert limiter.wait_to_start("a") == 0 and limiter.wait_to_start("b") == 0
    assert waits == []
    # The third call of the minute waits until the first start leaves the 60 s window: shift the log
    # back so that happens in about 1.5 s.
    redis_conn.zadd(f"imggen:limit:{key}:starts", {"a": int((time.time() - 58.5) * 1000)})
    assert limiter.wait_to_start("c") >= 1.0
    assert 1 <= len(waits) <= 3 and all(0 < w <= 1.0 for w in waits)


def test_a_429_pauses_the_key_for_every_job_until_retry_after(redis_conn, key):
    first = KeyLimiter(redis_conn, Limits(key, max_concurrent=4))
    other = KeyLimiter(redis_conn, Limits(key, max_concurrent=4))
    first.on_rate_limited(0.4)
    started = time.monotonic()
    other.wait_to_start("next")
    assert time.monotonic() - started >= 0.35


def test_a_blocked_key_fails_the_next_call_without_making_it(redis_conn, key):
    KeyLimiter(redis_conn, Limits(key)).block("This key has no credit left; add credit, then retry.")
    core = AICore(redis=redis_conn, limits=Limits(key))
    with pytest.raises(ProviderError, match="no credit left") as caught:
        core.generate_image("A lighthouse", "placeholder", "placeholder-v1", "1024x1024")
    assert caught.value.code == "key_blocked" and "provider_call" not in core.timings
    KeyLimiter(redis_conn, Limits(key)).unblock()
    assert core.generate_image("A lighthouse", "placeholder", "placeholder-v1", "1024x1024")["bytes"]


def test_auto_limits_halve_on_429_and_creep_back_up(redis_conn, key):
    limiter = KeyLimiter(redis_conn, Limits(key, max_concurrent=None))
    assert limiter.effective() == 1
    for _ in range(limits.AUTO_RAISE_AFTER * 3):
        limiter.on_success()
    assert limiter.effective() == 4
    limiter.on_rate_limited(0.01)
    assert limiter.effective() == 2
    for _ in range(limits.AUTO_COOLDOWN):
        limiter.on_success()
    assert limiter.effective() == 2  # no raise during the cool-down after a 429
    for _ in range(limits.AUTO_RAISE_AFTER):
        limiter.on_success()
    assert limiter.effective() == 3


def test_an_auto_keys_new_concurrency_is_what_rq_admits_by(redis_conn, key):
    """Raising an auto key's limit lets RQ admit a waiting job at once; lowering it holds the next ones."""
    auto = Limits(key, max_concurrent=None)
    queue = Queue(f"parked-{key}", connection=redis_conn)
    # Ids that sort in enqueue order, as the image jobs' do: RQ breaks ties within a second by job id.
    jobs = [queue.enqueue("tests.job_helpers.add", 1, n, job_id=f"{key}-{n}", rate_limit=rate_limit(redis_conn, auto))
            for n in range(4)]
    def registry():  # a fresh one each time, as RQ makes for every release (it caches the concurrency)
        return RateLimitRegistry(rq_key(auto), connection=redis_conn)

    assert [j.get_status() for j in jobs] == ["queued", "rate_limited", "rate_limited", "rate_limited"]
    limiter = KeyLimiter(redis_conn, auto)
    for _ in range(limits.AUTO_RAISE_AFTER):
        limiter.on_success()
    assert [j.get_status() for j in jobs] == ["queued", "queued", "rate_limited", "rate_limited"]
    assert registry().get_allowed_job_count() == 2
    # RQ's own release (a job's end) admits by the new value too: 2 stay let through.
    queue.empty()
    registry().release_and_enqueue(jobs[0].id)
    assert registry().get_allowed_job_ids() == [jobs[1].id, jobs[2].id]
    limiter.on_rate_limited(0.01)  # 2 → 1: the next job's end frees a slot that admits nobody
    registry().release_and_enqueue(jobs[1].id)
    assert registry().get_allowed_job_ids() == [jobs[2].id] and jobs[3].get_status() == "rate_limited"


def test_fixed_limits_ignore_a_stale_adaptive_value(redis_conn, key):
    KeyLimiter(redis_conn, Limits(key, max_concurrent=None)).on_rate_limited(0.01)
    assert rate_limit(redis_conn, Limits(key, max_concurrent=3)).concurrency == 3
