"""Task progress."""

from flask import g

from jobs.connection import get_redis
from jobs.errors import NotFound
from jobs.progress import task_progress
from webapp.api import bp


@bp.get("/system/task_progress/<task_id>/")
def progress(task_id):
    """Where a task stands, per image."""
    view = task_progress(task_id, g.account_id, get_redis())
    if view is None:
        raise NotFound("Task not found.")
    return view
