"""The Images page: articles with their images, Generate / Retry / Regenerate (each priced, and confirmed
on a paid provider), inline prompt edits, and the progress panel that follows a generation task and
cancels it."""

from flask import Blueprint, Response, flash, g, redirect, render_template, request, url_for
from redis.exceptions import RedisError

from jobs.budget import usd
from jobs.cancel import cancel_task
from jobs.connection import get_redis
from jobs.errors import AIFunctionError, Conflict, NotFound, ValidationError
from jobs.progress import shared_task_progress, task_progress
from jobs.tasks import start_task
from models import IMAGE_STATUSES
from webapp import writer
from webapp.conditional import conditional
from webapp.htmx import install_error_handlers, is_htmx, message, status_for, toast
from webapp.images_query import (
    article_page,
    blocks_for,
    image_label,
    image_rows,
    latest_unfinished_task,
    prices,
    settings_view,
)
from webapp.inputs import is_id_text, parse_page

bp = Blueprint("images_page", __name__)
install_error_handlers(bp)

FUNCTION = "generate_images_from_prompts"
FINISHED = ("done", "failed", "canceled")
NO_PENDING = "No pending images with prompts found"


@bp.app_template_filter("money")
def money(value) -> str:
    if value is None:
        return "—"
    text = f"{float(value):.4f}".rstrip("0")
    return "$" + (text + "0" * (2 - len(text.split(".")[1])))


bp.add_app_template_global(image_label, "image_label")
bp.add_app_template_filter(usd, "usd")


@bp.get("/writer/images")
def images():
    """Articles with their images, a page at a time, and the panel of a running generation."""
    status = request.args.get("status") if request.args.get("status") in IMAGE_STATUSES else None
    page = parse_page(request.args.get("page"))
    view = settings_view(g.account_id)
    blocks, total, pages = article_page(g.account_id, view, page, status)
    task_id = request.args.get("task") or latest_unfinished_task(g.account_id)
    return render_template("images/images.html", blocks=blocks, total=total, pages=pages, page=min(page, pages),
                           status=status, statuses=IMAGE_STATUSES, settings=view, prices=prices(g.account_id),
                           progress=progress_context(task_id) if task_id else None)


@bp.get("/writer/images/articles/<int:content_id>")
def article(content_id):
    """One article's block (the fragment the page includes and the panel refreshes)."""
    return render_template("images/_article.html", block=_block(content_id), prices=prices(g.account_id))


@bp.post("/writer/images/generate")
def generate():
    """Start generating the given images, plus the pending ones of the selected articles."""
    ids = _ids("ids")
    content_ids = _ids("content_id")
    if content_ids:
        blocks = blocks_for(g.account_id, settings_view(g.account_id), content_ids)
        if len(blocks) != len(set(content_ids)):
            raise NotFound("Article not found.")
        ids += [i for block in blocks for i in block.pending_ids if i not in ids]
    if not ids:
        return _refuse(NO_PENDING if content_ids or "ids" in request.form else "Select at least one article first.")
    regenerate = request.form.get("regenerate") in ("1", "true", "on")
    try:
        started = start_task(FUNCTION, {"ids": ids, "regenerate": regenerate}, g.account_id, created_by=g.user.id)
    except NotFound:
        raise
    except AIFunctionError as exc:
        return _refuse(exc.message, status=status_for(exc), category="error")
    notes = ["Image generation started"] + [f"Skipped image {s['id']}: {s['reason']}." for s in started["skipped"]]
    if not is_htmx():
        flash(" ".join(notes), "info")
        return redirect(url_for(".images", task=started["task_id"]))
    progress = progress_context(started["task_id"])
    return _panel(progress, refresh=True) + "".join(toast(n, "info") for n in notes)


@bp.post("/writer/images/<int:image_id>/prompt")
def edit_prompt(image_id):
    """Save an image's prompt; refused (409) while the image is being generated."""
    submitted = request.form.get("prompt")
    status, error = 200, None
    try:
        image = writer.update_prompt(g.account_id, image_id, submitted)
    except ValidationError as exc:  # NotFound is not one: it answers 404 through the handler
        image = writer.get_image(g.account_id, image_id)
        status, error = status_for(exc), exc.message
    if not is_htmx():
        flash(error or "Prompt saved.", "error" if error else "success")
        return redirect(url_for(".images"))
    editing = {"id": image_id, "error": error, "value": submitted if error else None}
    html = render_template("images/_article.html", block=_block(image.content_id), editing=editing,
                           prices=prices(g.account_id))
    return (html if error else html + toast("Prompt saved.", "success")), status


@bp.get("/writer/tasks/<task_id>/progress")
def task_progress_panel(task_id):
    """The progress panel of one task; polls itself until the task has finished."""
    progress = progress_context(task_id)
    if progress is None:
        if is_htmx():
            # The poll's answer replaces the panel with one that says so and has no trigger: polling stops.
            return render_template("images/_progress_gone.html", message="Task not found."), 404
        raise NotFound("Task not found.")
    # Only the poll that sees the task finish refreshes the articles: the finished panel stops polling.
    # The Runs page's panel (view=run) has no articles beside it, and once finished is history.
    on_runs_page = request.args.get("view") == "run"
    ended = is_htmx() and progress["finished"]
    html = _panel(progress, refresh=ended and not on_runs_page,
                  read_only=on_runs_page and progress["finished"], panel_view="run" if on_runs_page else None)
    if ended:
        task = progress["task"]
        # A cancel is what someone asked for, not a failure: told plainly (failed rows still show theirs).
        category = ("info" if task["state"] == "canceled"
                    else "success" if task["state"] == "done" and not task["totals"]["failed"] else "error")
        html += toast(task["message"], category)
    return conditional(Response(html))


@bp.post("/writer/tasks/<task_id>/cancel")
def cancel(task_id):
    """Cancel a running task: no call of it starts any more; calls in flight finish (the provider bills a
    started call either way) and the images not started are pending again."""
    try:
        outcome = cancel_task(task_id, g.account_id, get_redis())
    except Conflict as exc:  # it ended meanwhile; its panel finds that at its next poll
        return _refuse(exc.message, status=409, category="error", task=task_id)
    except RedisError:
        # Without the account's call gate a call could start between the check and the cancel: not now.
        return _refuse("The queue could not be reached, so nothing was canceled; try again in a moment.",
                       status=503, category="error", task=task_id)
    text = _canceled_sentence(outcome)
    if not is_htmx():
        flash(text, "info")
        return redirect(url_for(".images", task=task_id))
    progress = progress_context(task_id)
    # The articles now show the images let go as pending (the last poll refreshes them once more).
    return _panel(progress, refresh=True) + toast(text, "info")


def _canceled_sentence(outcome: dict) -> str:
    not_started, in_flight = outcome["not_started"], outcome["in_flight"]
    text = f"Canceled: {not_started} image{'' if not_started == 1 else 's'} not started"
    if in_flight:
        text += f"; {in_flight} in flight finish{'es' if in_flight == 1 else ''} (billed by the provider)"
    return text + "."


def progress_context(task_id: str) -> dict | None:
    """What _progress.html shows: task_progress's view, plus labels and which step is current."""
    try:
        view = shared_task_progress(task_id, g.account_id, get_redis())
    except RedisError:
        # Redis holds only the live per-image detail; the database still knows every status.
        view = task_progress(task_id, g.account_id, None)
    if view is None:
        return None
    finished = view["state"] in FINISHED
    phases = [phase for phase, _ in view["steps"]]
    current = len(phases) if finished or view["phase"] not in phases else phases.index(view["phase"])
    steps = [{"label": label, "state": "done" if n < current else "current" if n == current else "todo"}
             for n, (_, label) in enumerate(view["steps"])]
    labels = image_rows(g.account_id, [i["id"] for i in view["images"]])
    return {"task": view, "labels": labels, "finished": finished, "steps": steps,
            "failed_ids": [i["id"] for i in view["images"] if i["status"] == "failed"],
            "content_ids": sorted({row["content_id"] for row in labels.values()}, reverse=True)}


def _panel(progress: dict, *, refresh: bool, read_only: bool = False, panel_view: str | None = None) -> str:
    """The panel, plus (out of band) fresh blocks of the articles it covers."""
    html = render_template("images/_progress.html", progress=progress, read_only=read_only, panel_view=panel_view)
    if refresh:
        blocks = blocks_for(g.account_id, settings_view(g.account_id), progress["content_ids"])
        costs = prices(g.account_id) if blocks else None
        html += "".join(render_template("images/_article.html", block=b, oob=True, prices=costs) for b in blocks)
    return html


def _block(content_id: int):
    blocks = blocks_for(g.account_id, settings_view(g.account_id), [content_id])
    if not blocks:
        raise NotFound("Article not found.")
    return blocks[0]


def _ids(name: str) -> list[int]:
    values = [v.strip() for v in request.form.getlist(name) if v.strip()]
    if not all(is_id_text(v) for v in values):
        raise ValidationError(f"'{name}' must hold positive whole numbers.")
    return list(dict.fromkeys(int(v) for v in values))


def _refuse(text: str, *, status: int = 200, category: str = "info", task: str | None = None):
    """Nothing was started: a toast for htmx (the page stays), a flash and the page otherwise."""
    if not is_htmx():
        flash(text, category)
        return redirect(url_for(".images", task=task))
    return message(text, status, category)
