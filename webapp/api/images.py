"""Images: list, edit a prompt, and generate."""

from flask import g, request

from jobs.errors import ValidationError
from jobs.tasks import start_task
from models import IMAGE_STATUSES, Images
from webapp import writer
from webapp.api import bp, json_body
from webapp.api.serializers import image_json
from webapp.inputs import parse_id

FUNCTION = "generate_images_from_prompts"


@bp.get("/writer/images/")
def list_images():
    """Images of the account, optionally of one article and/or in one status."""
    query = Images.for_account(g.account_id)
    content_id = request.args.get("content_id")
    if content_id is not None:
        query = query.where(Images.content == parse_id(content_id, "content_id"))
    status = request.args.get("status")
    if status is not None:
        if status not in IMAGE_STATUSES:
            raise ValidationError(f"status must be one of: {', '.join(IMAGE_STATUSES)}.")
        query = query.where(Images.status == status)
    query = query.order_by(Images.content, Images.image_type != "featured", Images.position, Images.id).limit(1000)
    return {"results": [image_json(i) for i in query]}


@bp.patch("/writer/images/<int:image_id>/")
def edit_prompt(image_id):
    """Edit an image's prompt (409 while it is being generated)."""
    return image_json(writer.update_prompt(g.account_id, image_id, json_body().get("prompt")))


@bp.post("/writer/images/generate_images/")
def generate_images():
    """Queue generation of the given images; answers at once with the task id."""
    body = json_body()
    payload = {"ids": body.get("ids"), "regenerate": body.get("regenerate", False)}
    if body.get("dry_run", False) is not False:
        payload["dry_run"] = body["dry_run"]
    started = start_task(FUNCTION, payload, g.account_id, created_by=g.user.id)
    if started.get("dry_run"):
        return {"success": True, **started}
    answer = {"success": True, "task_id": started["task_id"], "message": "Image generation started"}
    if started["skipped"]:
        answer["skipped"] = started["skipped"]
    return answer
