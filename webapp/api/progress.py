"""Task progress."""

from flask import g
from redis.exceptions import RedisError

from jobs.connection import get_redis
from jobs.errors import NotFound
from jobs.progress import task_progress
from webapp.api import bp


@bp.get("/system/task_progress/<task_id>/")
def progress(task_id):
    """Where a task stands, per image."""
    try:
        view, live = task_progress(task_id, g.account_id, get_redis()), True
    except RedisError:
        # Redis holds only the live per-image detail; the database still knows every status.
        view, live = task_progress(task_id, g.account_id, None), False
    if view is None:
        raise NotFound("Task not found.")
    return {**view, "live": live}
