"""The progress estimate of a provider call the provider reports nothing about: the plan's curve, and
the same curve stretched to the model's recent median latency (kept in Redis)."""

import time

from jobs import latency
from jobs.progress import AI_CALL_SPAN, _item_percent


def test_with_nothing_known_the_plans_curve():
    assert latency.estimate_progress(0, None) == 0
    assert latency.estimate_progress(3.5, None) == 25
    assert latency.estimate_progress(7, None) == 50  # 0–50 % in 7 s
    assert latency.estimate_progress(12, None) == 75  # 50–75 % in the next 5 s
    later = [latency.estimate_progress(t, None) for t in (13, 20, 60, 600)]
    assert later == sorted(later) and later[0] > 75 and later[-1] == 95  # creeping up to 95, never past it


def test_a_known_median_puts_75_percent_on_it():
    assert latency.estimate_progress(30, 30.0) == 75
    assert latency.estimate_progress(15, 30.0) < 50 < latency.estimate_progress(20, 30.0)
    assert latency.estimate_progress(2, 2.0) == 75


def test_the_median_of_recent_calls_per_model(redis_conn, request):
    model = f"model-{request.node.name}-{time.time_ns()}"
    assert latency.median(redis_conn, "openai", model) is None
    for seconds in (10.0, 30.0, 20.0):
        latency.record(redis_conn, "openai", model, seconds)
    assert latency.median(redis_conn, "openai", model) == 20.0
    for _ in range(latency.KEEP):
        latency.record(redis_conn, "openai", model, 40.0)
    assert latency.median(redis_conn, "openai", model) == 40.0  # only the last KEEP calls count
    redis_conn.delete(f"imggen:latency:openai:{model}")


def test_an_images_bar_follows_its_call_from_when_it_started():
    low, high = AI_CALL_SPAN
    state = {"started_at": None}
    just_started = _item_percent("generating", "AI_CALL", {"call_started_at": time.time()}, state)
    at_median = _item_percent("generating", "AI_CALL", {"call_started_at": time.time() - 20,
                                                        "expected_seconds": 20.0}, state)
    assert just_started == low
    assert at_median == int(low + (high - low) * 75 / 95)
    assert _item_percent("queued", None, {}, state) == 0 and _item_percent("generated", None, {}, state) == 100
