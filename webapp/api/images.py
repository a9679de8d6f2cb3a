"""Images: list, edit, delete, and generate."""

from flask import g, request

from jobs.errors import ValidationError
from jobs.functions.generate_images_from_prompts import MAX_IDS
from jobs.tasks import start_task
from models import IMAGE_STATUSES, Images
from webapp import writer
from webapp.api import bp, json_body
from webapp.api.serializers import image_json, page_json, page_request
from webapp.inputs import MAX_ID, parse_id

FUNCTION = "generate_images_from_prompts"


@bp.get("/writer/images/")
def list_images():
    """Images of the account, optionally of one article and/or in one status, a page at a time."""
    query = Images.for_account(g.account_id)
    content_id = request.args.get("content_id")
    if content_id is not None:
        query = query.where(Images.content == parse_id(content_id, "content_id"))
    status = request.args.get("status")
    if status is not None:
        if status not in IMAGE_STATUSES:
            raise ValidationError(f"status must be one of: {', '.join(IMAGE_STATUSES)}.")
        query = query.where(Images.status == status)
    page, per_page = page_request()
    query = query.order_by(Images.content, Images.type_rank(), Images.position, Images.id)
    return page_json(query, page, per_page, lambda rows: [image_json(i) for i in rows])


@bp.patch("/writer/images/<int:image_id>/")
def edit_image(image_id):
    """Edit an image's prompt, alt text, title, caption or position (a prompt: 409 while it is being
    generated)."""
    return image_json(writer.update_image(g.account_id, image_id, json_body()))


@bp.delete("/writer/images/<int:image_id>/")
def delete_image(image_id):
    """Delete an image (409 while it is being generated)."""
    writer.delete_image(g.account_id, image_id)
    return "", 204


def _content_ids(value) -> list[int]:
    if not isinstance(value, list):
        raise ValidationError("'content_ids' must be a list of article ids.")
    if not value:
        raise ValidationError("No IDs provided")
    if len(value) > MAX_IDS:
        raise ValidationError(f"At most {MAX_IDS} content_ids per request; got {len(value)}.")
    bad = [i for i in value if isinstance(i, bool) or not isinstance(i, int) or not 0 < i <= MAX_ID]
    if bad:
        raise ValidationError(f"'content_ids' must hold positive whole numbers; got {bad[0]!r}.")
    if len(set(value)) != len(value):
        raise ValidationError("'content_ids' lists the same article more than once.")
    return value


def _with_articles(ids, content_ids) -> list:
    """`ids` plus the pending images with prompts of `content_ids` (another account's article: 404)."""
    pending = writer.pending_with_prompts(g.account_id, _content_ids(content_ids))
    if ids is None or ids == []:
        if not pending:
            raise ValidationError("Nothing to generate: those articles have no pending images with a prompt.")
        ids = []
    if not isinstance(ids, list):
        return ids  # refused as it is, by the function's own checks
    combined = ids + [i for i in pending if i not in ids]
    if len(combined) > MAX_IDS:
        raise ValidationError(f"That is {len(combined)} images to generate (with the articles' pending ones); at "
                              f"most {MAX_IDS} can be generated per request.")
    return combined


@bp.post("/writer/images/generate_images/")
def generate_images():
    """Queue generation of the given images (and of the given articles' pending ones); answers at once
    with the task id."""
    body = json_body()
    ids = body.get("ids")
    if body.get("content_ids") is not None:
        ids = _with_articles(ids, body["content_ids"])
    payload = {"ids": ids, "regenerate": body.get("regenerate", False)}
    if body.get("dry_run", False) is not False:
        payload["dry_run"] = body["dry_run"]
    started = start_task(FUNCTION, payload, g.account_id, created_by=g.user.id)
    if started.get("dry_run"):
        return {"success": True, **started}
    answer = {"success": True, "task_id": started["task_id"], "message": "Image generation started"}
    if started["skipped"]:
        answer["skipped"] = started["skipped"]
    return answer
