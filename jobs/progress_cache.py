"""The one cached view of each task's progress, in Redis, shared by everyone watching it.

A running task's view lives a second (its bars move by the clock, and the panel asks once a
second); an ended task's, half a minute. Whatever changes a task's images at once — an image's end,
a cancel — drops it, so the next poll shows the change.
"""

import json
import logging

from redis.exceptions import RedisError

log = logging.getLogger(__name__)

KEY = "imggen:progress:{}"
RUNNING_MS, ENDED_MS = 1000, 30_000


def get(redis, task_id: str, account_id: int) -> tuple[bool, dict | None]:
    """(found, view); a view cached for another account is found as "no such task"."""
    cached = redis.get(KEY.format(task_id))
    if cached is None:
        return False, None
    entry = json.loads(cached)
    return True, entry["view"] if entry["account"] == account_id else None


def put(redis, task_id: str, account_id: int, view: dict, *, ended: bool) -> None:
    redis.set(KEY.format(task_id), json.dumps({"account": account_id, "view": view}),
              px=ENDED_MS if ended else RUNNING_MS)


def forget(redis, task_id: str) -> None:
    if redis is None:
        return
    try:
        redis.delete(KEY.format(task_id))
    except RedisError as exc:  # the cached view then lives out its second
        log.warning("task %s: cached progress not dropped, Redis is unreachable: %s", task_id, exc)
