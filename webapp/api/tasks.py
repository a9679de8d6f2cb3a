"""Runs (the account's tasks), cancel, and usage."""

from flask import g, request

from jobs.cancel import cancel_task
from jobs.connection import get_redis
from webapp.api import bp
from webapp.inputs import parse_page
from webapp.runs_query import runs_page
from webapp.usage_query import parse_month, usage


@bp.get("/system/tasks/")
def list_tasks():
    """The account's tasks, newest first, a page at a time."""
    page = parse_page(request.args.get("page"))
    found = runs_page(g.account_id, page)
    next_url = f"{request.base_url}?page={page + 1}" if found["has_next"] else None
    return {"results": found["results"], "count": found["count"], "page": found["page"], "next": next_url}


@bp.post("/system/tasks/<task_id>/cancel/")
def cancel(task_id):
    """Stop a task: no new provider call starts; calls in flight finish; the rest are pending again."""
    return {"success": True, **cancel_task(task_id, g.account_id, get_redis())}


@bp.get("/system/usage/")
def month_usage():
    """A month's spend by model and by day, images generated and failed, and the budget."""
    return usage(g.account_id, parse_month(request.args.get("month")))
