"""Provider limits per key (account + provider), shared by every worker process through Redis.

How many calls run at once is RQ's job: each image's job is enqueued under
`RateLimit(key, concurrency)` (see `rate_limit`), so RQ admits at most that many of the key's jobs
to the queue, in enqueue order, and keeps the rest waiting without a worker process. Inside an
admitted job, `KeyLimiter` adds what RQ does not do:

- calls per minute: a sliding 60 s log of call starts, checked and recorded atomically;
- a 429 pauses the key for every job until the provider's retry-after;
- a key without credit is blocked: its other images fail at once, without a call;
- with no concurrency configured ("auto"), RQ's concurrency for the key adapts: halved on a 429,
  raised by one after a run of successes (AIMD), so an unknown limit is found without a storm of 429s.
"""

import math
import time
from dataclasses import dataclass

from rq import RateLimit
from rq.rate_limit import RateLimitRegistry

AUTO_MAX = 8  # the most parallel calls an "auto" key grows to
AUTO_RAISE_AFTER = 12  # successes in a row before one more parallel call is tried
AUTO_COOLDOWN = 40  # …and after a 429, successes before any raise at all
BLOCK_SECONDS = 3600  # a key without credit stays blocked this long unless a new request lifts it

# KEYS: starts, pause   ARGV: now_ms, per_minute, token
# 0 when the call may start now (its start is logged); else how many ms to wait first.
_START = """
local now = tonumber(ARGV[1])
local pause = redis.call('PTTL', KEYS[2])
if pause > 0 then return pause end
local per_minute = tonumber(ARGV[2])
if per_minute > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 60000)
  if redis.call('ZCARD', KEYS[1]) >= per_minute then
    local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    return math.max(10, tonumber(oldest[2]) + 60000 - now)
  end
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], 61000)
end
return 0
"""


@dataclass(frozen=True)
class Limits:
    key: str  # "account:provider"
    max_concurrent: int | None = 1  # None: auto (adaptive up to AUTO_MAX)
    per_minute: int | None = None


class KeyLimiter:
    def __init__(self, redis, limits: Limits, *, sleep=time.sleep):
        self.redis = redis
        self.limits = limits
        self.sleep = sleep
        prefix = f"imggen:limit:{limits.key}"
        self._starts_key = f"{prefix}:starts"
        self._pause_key = f"{prefix}:pause"
        self._effective_key = f"{prefix}:effective"
        self._streak_key = f"{prefix}:streak"
        self._blocked_key = f"{prefix}:blocked"
        self._start = redis.register_script(_START)

    def wait_to_start(self, token: str) -> float:
        """Wait out a 429 pause and the calls-per-minute window, then log this call's start; the seconds
        waited. The job holds its RQ slot meanwhile: the key could not make another call anyway."""
        waited = 0.0
        while True:
            wait_ms = self._start(keys=[self._starts_key, self._pause_key],
                                  args=[int(time.time() * 1000), self.limits.per_minute or 0, token])
            if wait_ms == 0:
                return waited
            pause = min(wait_ms, 1000) / 1000
            self.sleep(pause)
            waited += pause

    def on_success(self) -> None:
        if self.limits.max_concurrent is not None:
            return
        streak = self.redis.incr(self._streak_key)
        if streak >= AUTO_RAISE_AFTER:
            self.redis.set(self._streak_key, 0)
            effective = self.effective()
            if effective < AUTO_MAX:
                self._set_concurrency(effective + 1)

    def on_rate_limited(self, retry_after: float | None) -> None:
        """The provider said 429: every job on this key waits, and an auto key slows down."""
        pause_ms = int((retry_after if retry_after is not None else 1.0) * 1000)
        self.redis.set(self._pause_key, 1, px=max(pause_ms, 100))
        if self.limits.max_concurrent is None:
            self._set_concurrency(max(1, math.ceil(self.effective() / 2)))  # 3 → 2: 3 failed, 2 worked
            self.redis.set(self._streak_key, -AUTO_COOLDOWN)

    def _set_concurrency(self, value: int) -> None:
        # RQ reads a key's concurrency from its registry's config on every release, so the new value
        # takes effect at the next image's end; raising it admits a waiting image at once.
        self.redis.set(self._effective_key, value)
        registry = RateLimitRegistry(rq_key(self.limits), connection=self.redis)
        if self.redis.exists(registry.config_key):
            self.redis.hset(registry.config_key, "concurrency", value)
            registry.acquire_and_enqueue(value)

    # A key with no credit left fails every call the same way until a person adds credit: its other
    # images fail at once, without a call, and a new Generate request (the person's retry) lifts it.
    def block(self, reason: str, seconds: float = BLOCK_SECONDS) -> None:
        self.redis.set(self._blocked_key, reason.encode(), ex=int(seconds))

    def blocked(self) -> str | None:
        reason = self.redis.get(self._blocked_key)
        return reason.decode() if reason else None

    def unblock(self) -> None:
        self.redis.delete(self._blocked_key)

    def effective(self) -> int:
        """How many calls the key makes at once now."""
        if self.limits.max_concurrent is not None:
            return self.limits.max_concurrent
        return int(self.redis.get(self._effective_key) or 1)


def rq_key(limits: Limits) -> str:
    return f"imggen:{limits.key}"


def rate_limit(redis, limits: Limits) -> RateLimit:
    """RQ's limit for a key's image jobs: every producer passes the same concurrency (the fixed limit,
    or an auto key's current one)."""
    return RateLimit(key=rq_key(limits), concurrency=KeyLimiter(redis, limits).effective())
