"""Recent provider latencies, so progress bars can estimate a call the provider reports nothing about."""

import statistics

KEEP = 20


def _key(provider: str, model: str) -> str:
    return f"imggen:latency:{provider}:{model}"


def record(redis, provider: str, model: str, seconds: float) -> None:
    key = _key(provider, model)
    pipe = redis.pipeline()
    pipe.lpush(key, f"{seconds:.3f}")
    pipe.ltrim(key, 0, KEEP - 1)
    pipe.execute()


def median(redis, provider: str, model: str) -> float | None:
    values = [float(v) for v in redis.lrange(_key(provider, model), 0, KEEP - 1)]
    return statistics.median(values) if values else None


def estimate_progress(elapsed: float, expected: float | None) -> int:
    """Percent of a provider call done after `elapsed` seconds.

    With nothing known, the plan's curve: 0–50 % in 7 s, 50–75 % in the next 5 s, then creeping
    towards 95 %. With a median latency the same curve is stretched so 75 % falls on the median.
    """
    if expected and expected > 0:
        elapsed = elapsed * 12.0 / expected
    if elapsed <= 7:
        percent = 50 * elapsed / 7
    elif elapsed <= 12:
        percent = 50 + 25 * (elapsed - 7) / 5
    else:
        percent = 95 - 20 * (0.85 ** (elapsed - 12))
    return max(0, min(95, int(percent)))
