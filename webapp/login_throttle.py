"""Login throttling: failed logins, counted per account email and per client address in Redis, earn
a growing wait between attempts and then a temporary lock, so that guessing a password takes years
instead of minutes. A refused attempt checks no password and counts nothing more.

Redis being down does not lock everyone out: throttling is skipped (and logged) until it is back.
"""

import hashlib
import logging
import math
import time

from redis.exceptions import RedisError

log = logging.getLogger(__name__)

PREFIX = "imggen:login-failures:"
WINDOW = 15 * 60  # failures older than this are forgotten
LOCK_SECONDS = 15 * 60
# (failures before waits start, failures that lock): an address is shared by many people (an office,
# a NAT), so it gets more room than one account's email.
LIMITS = {"email": (5, 10), "address": (30, 100)}


def _key(kind: str, value: str) -> str:
    return PREFIX + kind + ":" + hashlib.sha256(value.strip().lower().encode()).hexdigest()[:32]


def _keys(email: str, address: str) -> dict:
    return {"email": _key("email", email), "address": _key("address", address or "-")}


def refusal(redis, email: str, address: str, *, now: float | None = None) -> str | None:
    """Why this attempt may not even be checked now, or None when it may."""
    now = time.time() if now is None else now
    try:
        for kind, key in _keys(email, address).items():
            count, last = redis.hmget(key, "count", "last")
            if count is None:
                continue
            count, last = int(count), float(last)
            free, lock = LIMITS[kind]
            if count >= lock and now < last + LOCK_SECONDS:
                minutes = math.ceil((last + LOCK_SECONDS - now) / 60)
                return (f"Too many failed logins: logging in is locked for {minutes} more minute"
                        f"{'' if minutes == 1 else 's'}. Try again later.")
            if count >= free:
                wait = 2 ** (count - free) - (now - last)
                if wait > 0:
                    seconds = math.ceil(wait)
                    return (f"Too many failed logins: wait {seconds} second{'' if seconds == 1 else 's'} "
                            "before trying again.")
    except RedisError as exc:
        log.warning("login throttling skipped, Redis is unavailable: %s", exc)
    return None


def failed(redis, email: str, address: str, *, now: float | None = None) -> None:
    now = time.time() if now is None else now
    try:
        with redis.pipeline() as pipe:
            for key in _keys(email, address).values():
                pipe.hincrby(key, "count", 1)
                pipe.hset(key, "last", now)
                pipe.expire(key, WINDOW + LOCK_SECONDS)
            pipe.execute()
    except RedisError as exc:
        log.warning("a failed login was not counted, Redis is unavailable: %s", exc)


def succeeded(redis, email: str) -> None:
    """The right password (while not throttled) forgives the email's failures; the address keeps its own."""
    try:
        redis.delete(_key("email", email))
    except RedisError as exc:
        log.warning("login failures not cleared, Redis is unavailable: %s", exc)
