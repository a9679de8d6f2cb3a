"""The Runs page's and `GET /v1/system/tasks/`'s reads: an account's tasks, newest first, a page at a
time, with who started each, its articles, counts, cost, state and duration, from the database (a
run's history outlives Redis)."""

import math

from peewee import JOIN

from jobs.engine import AIEngine
from jobs.registry import get_function
from models import AITaskLog, Content, Images, User

PER_PAGE = 20
ENDED = ("done", "failed", "canceled")


def runs_page(account_id, page: int, per_page: int = PER_PAGE) -> dict:
    query = (AITaskLog.select(AITaskLog, User.email)
             .join(User, JOIN.LEFT_OUTER, on=(AITaskLog.created_by == User.id))
             .where(AITaskLog.account == account_id))
    count = query.count()
    pages = max(1, math.ceil(count / per_page))
    tasks = list(query.order_by(AITaskLog.created_at.desc(), AITaskLog.id.desc()).paginate(page, per_page).objects())
    articles = _articles(account_id, tasks)
    return {"results": [run_row(task, articles.get(task.task_id, [])) for task in tasks], "count": count,
            "page": page, "per_page": per_page, "pages": pages, "has_next": page < pages}


def run_row(task: AITaskLog, articles: list) -> dict:
    totals, cost = task.totals or {}, task.cost
    if task.state not in ENDED and task.item_ids:
        # Written when the task ends; until then, counted from its images.
        summary = AIEngine(get_function(task.function_name), task.task_id, task.account_id, task=task).summary()
        totals, cost = summary["totals"], summary["cost"]
    started = task.started_at or task.created_at
    return {
        "task_id": task.task_id,
        "function_name": task.function_name,
        "state": task.state,
        "message": task.message,
        "totals": totals,
        "cost": float(cost or 0),
        "created_by": getattr(task, "email", None),
        "created_at": _iso(task.created_at),
        "finished_at": _iso(task.finished_at),
        "duration_seconds": round((task.finished_at - started).total_seconds(), 1) if task.finished_at else None,
        "articles": articles,
    }


def _articles(account_id, tasks) -> dict:
    """{task id: [{'id', 'title'}]} for the tasks' images, in two queries whatever the page size."""
    image_ids = {i for task in tasks for i in (task.item_ids or [])}
    if not image_ids:
        return {}
    rows = (Images.for_account(account_id).select(Images.id, Content.id, Content.title, Content.meta_title)
            .join(Content).where(Images.id.in_(list(image_ids))))
    article_of = {row.id: row.content for row in rows}
    found = {}
    for task in tasks:
        contents = {article_of[i].id: article_of[i] for i in (task.item_ids or []) if i in article_of}
        found[task.task_id] = [{"id": c.id, "title": c.display_title} for c in contents.values()]
    return found


def _iso(value):
    return value.isoformat() + "Z" if value else None
