"""Provider limits per key (account + provider), shared by every worker process through Redis.

- max concurrent calls: leases in a sorted set, each expiring on its own so a killed worker's
  lease frees itself;
- callers waiting for a slot stand in one line per key, ordered by their turn (the task's start, then
  the image's place in it), so a task's featured image goes first even when its next image is
  already prepared and waiting; a release wakes the callers at the head of the line at once, so the
  next call starts when the previous one ends rather than at a poll;
- calls per minute: a sliding 60 s log of call starts;
- a 429 pauses the key for every chain until the provider's retry-after;
- with no concurrency limit configured ("auto"), the effective limit adapts: halved on a 429, raised
  by one after a run of successes (AIMD), so an unknown limit is found without a storm of 429s.
"""

import contextlib
import math
import time
import uuid
from dataclasses import dataclass

AUTO_MAX = 8  # the most parallel calls an "auto" key grows to
AUTO_RAISE_AFTER = 12  # successes in a row before one more parallel call is tried
AUTO_COOLDOWN = 40  # …and after a 429, successes before any raise at all
LEASE_SECONDS = 300  # a lease outlives any call; killed holders release by expiry
FULL = -1  # the acquire script's answer when the caller must wait for a release
# A waiter asks again at least this often (a dead holder's lease frees itself without a release) and
# leaves the line if it stops asking for WAITER_TTL (its process died).
WAKE_TIMEOUT = 1.0
WAITER_TTL_MS = 5000
# How long a task's first jobs have to reach the line before their reserved places lapse.
RESERVE_SECONDS = 10
BLOCK_SECONDS = 3600  # a key without credit stays blocked this long unless a new request lifts it

# KEYS: leases, starts, pause, effective, line, waiter deadlines
# ARGV: now_ms, token, lease_ms, limit, per_minute, auto, waiter_ttl_ms
_ACQUIRE = """
local now = tonumber(ARGV[1])
local token = ARGV[2]
-- a lease under the caller's own name is a killed earlier run of the same job: it holds nothing now
redis.call('ZREM', KEYS[1], token)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - 60000)
for _, gone in ipairs(redis.call('ZRANGEBYSCORE', KEYS[6], '-inf', now)) do
  redis.call('ZREM', KEYS[5], gone)
end
redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', now)
redis.call('ZADD', KEYS[5], 0, token)
redis.call('ZADD', KEYS[6], now + tonumber(ARGV[7]), token)
redis.call('PEXPIRE', KEYS[5], ARGV[3])
redis.call('PEXPIRE', KEYS[6], ARGV[3])
local pause = redis.call('PTTL', KEYS[3])
if pause > 0 then return pause end
local limit = tonumber(ARGV[4])
local effective = limit
if ARGV[6] == '1' then effective = math.min(limit, tonumber(redis.call('GET', KEYS[4]) or 1)) end
-- equal scores: the line is ordered by the tokens, which begin with the caller's turn
if redis.call('ZRANK', KEYS[5], token) >= effective - redis.call('ZCARD', KEYS[1]) then return -1 end
local per_minute = tonumber(ARGV[5])
if per_minute > 0 and redis.call('ZCARD', KEYS[2]) >= per_minute then
  local oldest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  return math.max(10, tonumber(oldest[2]) + 60000 - now)
end
redis.call('ZREM', KEYS[5], token)
redis.call('ZREM', KEYS[6], token)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), token)
redis.call('ZADD', KEYS[2], now, token)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], 61000)
return 0
"""

# KEYS: leases, line, effective   ARGV: token, limit, auto, wake key prefix
_RELEASE = """
redis.call('ZREM', KEYS[1], ARGV[1])
local effective = tonumber(ARGV[2])
if ARGV[3] == '1' then effective = math.min(effective, tonumber(redis.call('GET', KEYS[3]) or 1)) end
local free = effective - redis.call('ZCARD', KEYS[1])
if free > 0 then
  for _, waiter in ipairs(redis.call('ZRANGE', KEYS[2], 0, free - 1)) do
    local wake = ARGV[4] .. waiter
    redis.call('DEL', wake)
    redis.call('RPUSH', wake, 1)
    redis.call('PEXPIRE', wake, 10000)
  end
end
return free
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


def turn(started_at: float, position: int = 0) -> str:
    """A place in a key's line: callers of an earlier task first, then by the image's position."""
    return f"{int(started_at * 1000):015d}.{position:06d}"


def waiter_id(place: str, holder: str) -> str:
    """How a caller stands in the line and holds its lease: its place, then the RQ job id."""
    return f"{place}|{holder}"


class KeyLimiter:
    def __init__(self, redis, limits: Limits, *, sleep=time.sleep, max_wait: float = 900.0):
        self.redis = redis
        self.limits = limits
        self.sleep = sleep
        self.max_wait = max_wait
        prefix = f"imggen:limit:{limits.key}"
        self.keys = [f"{prefix}:leases", f"{prefix}:starts", f"{prefix}:pause", f"{prefix}:effective",
                     f"{prefix}:line", f"{prefix}:waiting"]
        self._streak_key = f"{prefix}:streak"
        self._blocked_key = f"{prefix}:blocked"
        self._wake_prefix = f"{prefix}:wake:"
        self._acquire = redis.register_script(_ACQUIRE)
        self._release = redis.register_script(_RELEASE)

    @property
    def _auto(self) -> str:
        return "1" if self.limits.max_concurrent is None else "0"

    def reserve(self, waiters: list[str], seconds: float = RESERVE_SECONDS) -> None:
        """Hold places in the line for callers about to arrive (a task's first jobs, which start at
        the same moment), so the first to be ready is not the first served when that is not its turn.
        A place its caller never takes is given up after `seconds`."""
        deadline = int((time.time() + seconds) * 1000)
        with self.redis.pipeline(transaction=False) as pipe:
            for waiter in waiters:
                pipe.zadd(self.keys[4], {waiter: 0})
                pipe.zadd(self.keys[5], {waiter: deadline})
            pipe.pexpire(self.keys[4], LEASE_SECONDS * 1000)
            pipe.pexpire(self.keys[5], LEASE_SECONDS * 1000)
            pipe.execute()

    def acquire(self, holder: str | None = None, place: str | None = None) -> str:
        """Wait for a slot; return the lease token. `holder` is the RQ job id making the call, so a lease
        whose job has died is taken back at once instead of at its expiry; `place` (see `turn`) orders
        the waiters, by arrival when not given. Raises LimitWaitTooLong after max_wait seconds."""
        token = waiter_id(place or turn(time.time()), holder or f"-{uuid.uuid4().hex}")
        deadline = time.monotonic() + self.max_wait
        next_reap = time.monotonic() + 1.0
        try:
            while True:
                wait_ms = self._acquire(keys=self.keys, args=[
                    int(time.time() * 1000), token, LEASE_SECONDS * 1000, self.limits.ceiling,
                    self.limits.per_minute or 0, self._auto, WAITER_TTL_MS])
                if wait_ms == 0:
                    return token
                if time.monotonic() + max(wait_ms, 0) / 1000 > deadline:
                    raise LimitWaitTooLong(
                        f"Waited {self.max_wait:.0f} s for a free call under this provider key's limits "
                        "(other images of the account were using them); retry it.")
                if time.monotonic() >= next_reap:
                    next_reap = time.monotonic() + 1.0
                    if self._reap_dead_holders():
                        continue  # a slot was freed: ask again at once
                if wait_ms == FULL:
                    self.redis.blpop([self._wake_prefix + token], timeout=WAKE_TIMEOUT)
                else:
                    self.sleep(min(wait_ms, 1000) / 1000)  # a pause or the per-minute window: time frees it
        except BaseException:
            self.leave(token)  # a timed-out or killed wait must not keep its place
            raise

    def leave(self, waiter: str) -> None:
        """Give up a place in the line (a reserved caller that will not call after all)."""
        with contextlib.suppress(Exception), self.redis.pipeline(transaction=False) as pipe:
            pipe.zrem(self.keys[4], waiter)
            pipe.zrem(self.keys[5], waiter)
            pipe.execute()

    def _reap_dead_holders(self) -> int:
        """Free leases whose job is no longer running (its work-horse was killed mid-call); how many."""
        from rq.job import Job, JobStatus

        freed = 0
        for token in self.redis.zrange(self.keys[0], 0, -1):
            holder = token.decode().split("|")[1]
            if holder.startswith("-"):
                continue
            try:
                running = Job.fetch(holder, connection=self.redis).get_status() == JobStatus.STARTED
            except Exception:  # noqa: BLE001 - a missing job holds nothing
                running = False
            if not running:
                freed += self.redis.zrem(self.keys[0], token)
        return freed

    def release(self, token: str) -> None:
        """Give the slot back and wake the waiters at the head of the line that may now go."""
        self._release(keys=[self.keys[0], self.keys[4], self.keys[3]],
                      args=[token, self.limits.ceiling, self._auto, self._wake_prefix])

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
            self.redis.set(self.keys[3], max(1, math.ceil(effective / 2)))  # 3 → 2: 3 failed, 2 worked
            self.redis.set(self._streak_key, -AUTO_COOLDOWN)

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
        if self.limits.max_concurrent is not None:
            return self.limits.max_concurrent
        return int(self.redis.get(self.keys[3]) or 1)


def chains_for(redis, limits: Limits | None) -> int:
    """Parallel chains for a task: two per call the key allows at once (its fixed limit, or an auto
    key's current one). While one chain's job calls, its partner's job is prepared and waiting in the
    key's line, so when a call ends the next starts at once instead of after RQ hands over and
    prepares a job. An auto key gets one chain more, to take a slot when its limit grows."""
    if limits is None:
        return 1
    if limits.max_concurrent is not None:
        return 2 * limits.max_concurrent
    effective = int(redis.get(f"imggen:limit:{limits.key}:effective") or 1) if redis is not None else 1
    return 2 * min(AUTO_MAX, effective) + 1
