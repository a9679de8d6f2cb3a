"""Runs: the account's generation tasks, newest first, and one run's progress panel."""

import datetime as dt

from flask import Blueprint, g, redirect, render_template, request, url_for

from jobs.errors import NotFound
from webapp.htmx import install_error_handlers
from webapp.images_page import progress_context
from webapp.inputs import parse_page
from webapp.runs_query import runs_page

bp = Blueprint("runs_page", __name__, url_prefix="/writer")
install_error_handlers(bp)

# The image badges' colours, reused for a run: waiting, working, ended well, ended badly.
STATE_BADGES = {"queued": "badge-queued", "running": "badge-generating", "done": "badge-generated",
                "failed": "badge-failed", "canceled": ""}


@bp.get("/runs")
def runs():
    """The account's runs, newest first, a page at a time."""
    page = parse_page(request.args.get("page"))
    found = runs_page(g.account_id, page)
    if page > found["pages"]:
        # An old link after runs were deleted, or a typed number: the last page that has runs.
        return redirect(url_for(".runs", page=found["pages"]))
    rows = [{**row, "when": when(row["created_at"]), "took": took(row["duration_seconds"]),
             "badge": STATE_BADGES.get(row["state"], "")} for row in found["results"]]
    return render_template("runs/runs.html", runs=rows, page=found["page"], pages=found["pages"],
                           count=found["count"])


@bp.get("/runs/<task_id>")
def run(task_id):
    """One run's progress panel: it polls itself while the run is going, and is read-only once it ended."""
    progress = progress_context(task_id)
    if progress is None:  # another account's task answers like a missing one
        raise NotFound("Task not found.")
    return render_template("runs/run.html", progress=progress, read_only=progress["finished"], panel_view="run")


def when(iso: str | None) -> str:
    """'2026-12-03 14:05 UTC' from runs_query's ISO text: stored times are UTC, and staff may be anywhere."""
    if not iso:
        return "—"
    return dt.datetime.fromisoformat(iso.removesuffix("Z")).strftime("%Y-%m-%d %H:%M UTC")


def took(seconds: float | None) -> str:
    """'42.5 s', '3 min 5 s', '1 h 2 min'; a run that has not ended has no duration yet."""
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"
