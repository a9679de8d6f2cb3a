"""The per-key limiter on a real Redis: concurrency, calls per minute, 429 pauses, adaptive limits."""

import threading
import time

import pytest

from jobs import limits
from jobs.limits import KeyLimiter, Limits, chains_for


@pytest.fixture
def key(redis_conn, request):
    return f"test-{request.node.name}-{time.time_ns()}"


def test_it_never_lets_more_than_the_limit_run_at_once(redis_conn, key):
    limiter = KeyLimiter(redis_conn, Limits(key, max_concurrent=2))
    running, peak, lock = [0], [0], threading.Lock()

    def call():
        token = limiter.acquire()
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        limiter.release(token)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] == 2


def test_calls_per_minute_make_the_next_call_wait(redis_conn, key):
    waits = []
    limiter = KeyLimiter(redis_conn, Limits(key, max_concurrent=5, per_minute=2), sleep=waits.append,
                         max_wait=0.5)
    limiter.release(limiter.acquire())
    limiter.release(limiter.acquire())
    with pytest.raises(limits.LimitWaitTooLong):
        limiter.acquire()  # the third call of the minute would have to wait ~60 s


def test_a_429_pauses_the_key_for_every_caller_until_retry_after(redis_conn, key):
    first = KeyLimiter(redis_conn, Limits(key, max_concurrent=4))
    other = KeyLimiter(redis_conn, Limits(key, max_concurrent=4))
    first.on_rate_limited(0.4)
    started = time.monotonic()
    other.release(other.acquire())
    assert time.monotonic() - started >= 0.35


def test_auto_limits_halve_on_429_and_creep_back_up(redis_conn, key):
    limiter = KeyLimiter(redis_conn, Limits(key, max_concurrent=None))
    assert limiter.effective() == 1
    for _ in range(limits.AUTO_RAISE_AFTER * 3):
        limiter.on_success()
    assert limiter.effective() == 4
    assert chains_for(redis_conn, limiter.limits) == 5  # one more chain than calls, to probe
    limiter.on_rate_limited(0.01)
    assert limiter.effective() == 2
    for _ in range(limits.AUTO_COOLDOWN):
        limiter.on_success()
    assert limiter.effective() == 2  # no raise during the cool-down after a 429
    for _ in range(limits.AUTO_RAISE_AFTER):
        limiter.on_success()
    assert limiter.effective() == 3


def test_a_lease_held_by_a_dead_job_is_taken_back(redis_conn, key):
    limiter = KeyLimiter(redis_conn, Limits(key, max_concurrent=1), max_wait=5)
    limiter.acquire(holder="job-that-no-longer-exists")  # its work-horse was killed mid-call
    started = time.monotonic()
    limiter.release(limiter.acquire())
    assert time.monotonic() - started < 3


def test_fixed_limits_ignore_a_stale_adaptive_value(redis_conn, key):
    auto = KeyLimiter(redis_conn, Limits(key, max_concurrent=None))
    assert auto.effective() == 1
    fixed = KeyLimiter(redis_conn, Limits(key, max_concurrent=3))
    tokens = [fixed.acquire() for _ in range(3)]  # would block if the auto value (1) applied
    for token in tokens:
        fixed.release(token)
