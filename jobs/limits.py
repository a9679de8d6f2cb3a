"""Provider limits per key (account + provider), shared by every worker process through Redis.

- max concurrent calls: leases in a sorted set, each expiring on its own so a killed worker's
  lease frees itself;
- calls per minute: a sliding 60 s log of call starts;
- a 429 pauses the key for every chain until the provider's retry-after;
- with no concurrency limit configured ("auto"), the effective limit adapts: halved on a 429, raised
  by one after a run of successes (AIMD), so an unknown limit is found without a storm of 429s.
"""

import time
import uuid
from dataclasses import dataclass

AUTO_MAX = 8  # the most parallel calls an "auto" key grows to
AUTO_RAISE_AFTER = 12  # successes in a row before one more parallel call is tried
AUTO_COOLDOWN = 40  # …and after a 429, successes before any raise at all
LEASE_SECONDS = 300  # a lease outlives any call; killed holders release by expiry

# KEYS: leases, starts, pause, effective   ARGV: now_ms, token, lease_ms, limit, per_minute, auto
_ACQUIRE = """
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - 60000)
local pause = redis.call('PTTL', KEYS[3])
if pause > 0 then return pause end
local limit = tonumber(ARGV[4])
local effective = limit
if ARGV[6] == '1' then effective = math.min(limit, tonumber(redis.call('GET', KEYS[4]) or 1)) end
if redis.call('ZCARD', KEYS[1]) >= effective then return 50 end
local per_minute = tonumber(ARGV[5])
if per_minute > 0 and redis.call('ZCARD', KEYS[2]) >= per_minute then
  local oldest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  return math.max(10, tonumber(oldest[2]) + 60000 - now)
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])
redis.call('ZADD', KEYS[2], now, ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], 61000)
return 0
"""


@dataclass(frozen=True)
class Limits:
    key: str  # "account:provider"
    max_concurrent: int | None = 1  # None: auto (adaptive up to AUTO_MAX)
    per_minute: int | None = None

    @property
    def ceiling(self) -> int:
        return self.max_concurrent or AUTO_MAX


class LimitWaitTooLong(Exception):
    pass


class KeyLimiter:
    def __init__(self, redis, limits: Limits, *, sleep=time.sleep, max_wait: float = 900.0):
        self.redis = redis
        self.limits = limits
        self.sleep = sleep
        self.max_wait = max_wait
        prefix = f"imggen:limit:{limits.key}"
        self.keys = [f"{prefix}:leases", f"{prefix}:starts", f"{prefix}:pause", f"{prefix}:effective"]
        self._streak_key = f"{prefix}:streak"
        self._acquire = redis.register_script(_ACQUIRE)

    def acquire(self, holder: str | None = None) -> str:
        """Wait for a slot; return the lease token. `holder` is the RQ job id making the call, so a lease
        whose job has died is taken back at once instead of at its expiry.
        Raises LimitWaitTooLong after max_wait seconds."""
        token = f"{holder or '-'}|{uuid.uuid4().hex}"
        auto = "1" if self.limits.max_concurrent is None else "0"
        deadline = time.monotonic() + self.max_wait
        next_reap = time.monotonic() + 1.0
        while True:
            wait_ms = self._acquire(keys=self.keys, args=[int(time.time() * 1000), token, LEASE_SECONDS * 1000,
                                                          self.limits.ceiling, self.limits.per_minute or 0, auto])
            if wait_ms == 0:
                return token
            if time.monotonic() + wait_ms / 1000 > deadline:
                raise LimitWaitTooLong(f"waited {self.max_wait:.0f} s for the provider's rate limit")
            if time.monotonic() >= next_reap:
                self._reap_dead_holders()
                next_reap = time.monotonic() + 1.0
            self.sleep(min(wait_ms, 1000) / 1000)

    def _reap_dead_holders(self) -> None:
        """Free leases whose job is no longer running (its work-horse was killed mid-call)."""
        from rq.job import Job, JobStatus

        for token in self.redis.zrange(self.keys[0], 0, -1):
            holder = token.decode().split("|", 1)[0]
            if holder == "-":
                continue
            try:
                running = Job.fetch(holder, connection=self.redis).get_status() == JobStatus.STARTED
            except Exception:  # noqa: BLE001 - a missing job holds nothing
                running = False
            if not running:
                self.redis.zrem(self.keys[0], token)

    def release(self, token: str) -> None:
        self.redis.zrem(self.keys[0], token)

    def on_success(self) -> None:
        if self.limits.max_concurrent is not None:
            return
        streak = self.redis.incr(self._streak_key)
        if streak >= AUTO_RAISE_AFTER:
            effective = int(self.redis.get(self.keys[3]) or 1)
            if effective < AUTO_MAX:
                self.redis.set(self.keys[3], effective + 1)
            self.redis.set(self._streak_key, 0)

    def on_rate_limited(self, retry_after: float | None) -> None:
        """The provider said 429: every chain on this key waits, and an auto key slows down."""
        pause_ms = int((retry_after if retry_after is not None else 1.0) * 1000)
        self.redis.set(self.keys[2], 1, px=max(pause_ms, 100))
        if self.limits.max_concurrent is None:
            effective = int(self.redis.get(self.keys[3]) or 1)
            self.redis.set(self.keys[3], max(1, effective // 2))
            self.redis.set(self._streak_key, -AUTO_COOLDOWN)

    def effective(self) -> int:
        if self.limits.max_concurrent is not None:
            return self.limits.max_concurrent
        return int(self.redis.get(self.keys[3]) or 1)


def chains_for(redis, limits: Limits | None) -> int:
    """Parallel chains for a task: the key's fixed concurrency, or (auto) its current adaptive limit
    plus one, so the limit can grow while the task runs."""
    if limits is None:
        return 1
    if limits.max_concurrent is not None:
        return limits.max_concurrent
    effective = int(redis.get(f"imggen:limit:{limits.key}:effective") or 1) if redis is not None else 1
    return min(AUTO_MAX, effective + 1)
