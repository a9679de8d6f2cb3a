"""The per-key limiter on a real Redis: concurrency, calls per minute, 429 pauses, adaptive limits."""

import threading
import time

import pytest

from jobs import limits
from jobs.ai_core import AICore
from jobs.engine import ITEM_TIMEOUT, LINE_WAIT, readable_error
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
    assert chains_for(redis_conn, limiter.limits) == 9  # a waiting partner per call, and one to probe
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


def test_a_fixed_limit_runs_a_waiting_chain_beside_each_call(redis_conn, key):
    # the partner chain's job is prepared and waiting in line when a call ends
    assert chains_for(redis_conn, Limits(key, max_concurrent=1)) == 2
    assert chains_for(redis_conn, Limits(key, max_concurrent=4)) == 8
    assert chains_for(redis_conn, None) == 1


def _wait_in_thread(limiter, place, served, hold=0.0, holder=None):
    def run():
        token = limiter.acquire(holder=holder or f"job-{place}", place=place)
        served.append((place, time.monotonic()))
        time.sleep(hold)
        limiter.release(token)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_waiters_are_served_in_their_turn_not_their_arrival(redis_conn, key):
    limiter = KeyLimiter(redis_conn, Limits(key, max_concurrent=1))
    held = limiter.acquire()
    served = []
    places = [limits.turn(1000.0, position) for position in (3, 1, 2)]  # arrive out of order
    threads = []
    for place in places:
        threads.append(_wait_in_thread(limiter, place, served))
        time.sleep(0.05)  # each is in line before the next arrives
    limiter.release(held)
    for thread in threads:
        thread.join(timeout=10)
    assert [place for place, _ in served] == sorted(places)


def test_a_release_wakes_the_next_waiter_at_once(redis_conn, key):
    limiter = KeyLimiter(redis_conn, Limits(key, max_concurrent=1))
    held = limiter.acquire()
    served = []
    thread = _wait_in_thread(limiter, limits.turn(time.time()), served)
    time.sleep(0.2)  # blocked in line
    released = time.monotonic()
    limiter.release(held)
    thread.join(timeout=5)
    # far below WAKE_TIMEOUT: the release woke it rather than its next look
    assert served and served[0][1] - released < 0.1


def test_a_reserved_place_holds_off_a_later_turn_until_its_caller_comes(redis_conn, key):
    limiter = KeyLimiter(redis_conn, Limits(key, max_concurrent=1))
    first, second = limits.turn(2000.0, 0), limits.turn(2000.0, 1)
    limiter.reserve([limits.waiter_id(first, "job-a"), limits.waiter_id(second, "job-b")])
    served = []
    late = _wait_in_thread(limiter, second, served, hold=0.05, holder="job-b")
    time.sleep(0.3)
    assert served == []  # the free slot is the first image's, which is not here yet
    early = _wait_in_thread(limiter, first, served, hold=0.05, holder="job-a")
    late.join(timeout=5)
    early.join(timeout=5)
    assert [place for place, _ in served] == [first, second]


def test_a_place_nobody_takes_lapses(redis_conn, key):
    limiter = KeyLimiter(redis_conn, Limits(key, max_concurrent=1))
    limiter.reserve([limits.waiter_id(limits.turn(3000.0, 0), "job-never-came")], seconds=0.5)
    started = time.monotonic()
    limiter.release(limiter.acquire(holder="job-b", place=limits.turn(3000.0, 1)))
    assert 0.4 < time.monotonic() - started < 3


def test_a_place_given_up_frees_the_line_at_once(redis_conn, key):
    limiter = KeyLimiter(redis_conn, Limits(key, max_concurrent=1))
    ghost = limits.waiter_id(limits.turn(4000.0, 0), "job-failed-before-its-call")
    limiter.reserve([ghost])
    limiter.leave(ghost)
    started = time.monotonic()
    limiter.release(limiter.acquire(holder="job-b", place=limits.turn(4000.0, 1)))
    assert time.monotonic() - started < 0.2


def test_a_wait_that_gives_up_leaves_the_line(redis_conn, key):
    limiter = KeyLimiter(redis_conn, Limits(key, max_concurrent=1), max_wait=1.2)
    held = limiter.acquire()  # no RQ job behind it, so it is not taken back as a dead holder's
    with pytest.raises(limits.LimitWaitTooLong):
        limiter.acquire(holder="job-impatient", place=limits.turn(1.0))  # the earliest turn there is
    limiter.release(held)
    started = time.monotonic()
    limiter.release(limiter.acquire(holder="job-later", place=limits.turn(time.time())))
    assert time.monotonic() - started < 0.2  # not stuck behind the one that gave up


def test_a_job_run_again_is_not_blocked_by_the_lease_its_killed_run_left(redis_conn, key):
    limiter = KeyLimiter(redis_conn, Limits(key, max_concurrent=1), max_wait=3)
    place = limits.turn(5000.0, 0)
    limiter.acquire(holder="task-item-7", place=place)  # the work-horse was killed mid-call
    started = time.monotonic()
    limiter.release(limiter.acquire(holder="task-item-7", place=place))  # ops requeue the job
    assert time.monotonic() - started < 0.2


def test_a_wait_for_a_free_call_that_runs_out_is_the_images_own_readable_reason(redis_conn, key):
    assert LINE_WAIT < ITEM_TIMEOUT  # the line gives up before the job's timeout would blame the provider
    held = KeyLimiter(redis_conn, Limits(key, max_concurrent=1)).acquire()
    core = AICore(redis=redis_conn, limits=Limits(key, max_concurrent=1), max_wait=1.2)
    with pytest.raises(limits.LimitWaitTooLong) as caught:
        core.generate_image("A lighthouse", "placeholder", "placeholder-v1", "1024x1024")
    assert readable_error(caught.value).startswith("Waited 1 s for a free call under this provider key's limits")
    KeyLimiter(redis_conn, Limits(key, max_concurrent=1)).release(held)
