"""Task progress."""

from flask import g, jsonify
from redis.exceptions import RedisError

from jobs.connection import get_redis
from jobs.errors import NotFound
from jobs.progress import shared_task_progress, task_progress
from webapp.api import bp
from webapp.conditional import conditional


@bp.get("/system/task_progress/<task_id>/")
def progress(task_id):
    """Where a task stands, per image; 304 for a poller whose view has not changed."""
    try:
        view, live = shared_task_progress(task_id, g.account_id, get_redis()), True
    except RedisError:
        # Redis holds only the live per-image detail; the database still knows every status.
        view, live = task_progress(task_id, g.account_id, None), False
    if view is None:
        raise NotFound("Task not found.")
    return conditional(jsonify({**view, "live": live}))
