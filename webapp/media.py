"""Stored images, served to their own account only, with a strong ETag.

Every backend is served the same way, through the app from storage.load(): that works with a private
bucket, keeps the account check in front of the bytes, and keeps the pages' `img-src 'self'` policy
(a redirect to a bucket or CDN would be another origin, which the policy blocks). For publishing
outside the app, public_image_url() gives each generated image a login-free URL: the app's own
`/p/<key>.<ext>` (webapp/public.py), or with STORAGE_BACKEND=s3 and MEDIA_PUBLIC_BASE_URL set, the
object's URL on the bucket or its CDN, so readers never reach the app.
"""

from flask import Blueprint, Response, abort, current_app, g, has_request_context, request

from jobs import publishing
from jobs.storage import NotStored, get_storage
from models import Images

bp = Blueprint("media", __name__)


@bp.get("/media/images/<int:image_id>.<ext>")
def image_file(image_id, ext):
    """The stored bytes of a generated image (404 for another account's image, like a missing one)."""
    image = Images.for_account(g.account_id).where(Images.id == image_id).first()
    if image is None or not image.file_path or ext != _extension(image.image_format):
        abort(404)
    try:
        stored = get_storage(current_app.config["SERVICE_CONFIG"]).load(image.file_path)
    except NotStored:
        abort(404)
    etag = stored.etag
    headers = {"ETag": f'"{etag}"', "Cache-Control": "private, max-age=86400",
               "X-Content-Type-Options": "nosniff"}
    if request.if_none_match.contains(etag):
        return Response(status=304, headers=headers)
    return Response(stored.data, content_type=stored.content_type, headers=headers)


def public_image_url(image, *, base_url: str | None = None) -> str | None:
    """The image's absolute login-free URL, or None until it is generated.

    The bucket's or its CDN's URL when the store has one (S3 with MEDIA_PUBLIC_BASE_URL); else the app's
    `/p/<key>.<ext>` on `base_url` (by default the host the request came to)."""
    if not image.file_path or image.status != "generated":
        return None
    direct = get_storage(current_app.config["SERVICE_CONFIG"]).public_url(image.file_path)
    if direct:
        return direct
    if not image.public_key:
        return None  # stored before public URLs existed: it gets one when it is regenerated
    if base_url is None:
        base_url = request.host_url if has_request_context() else ""
    return base_url.rstrip("/") + publishing.public_path(image.public_key, _extension(image.image_format))


def _extension(image_format: str | None) -> str:
    return {"jpg": "jpg", "jpeg": "jpg", "png": "png", "webp": "webp"}.get(image_format or "", "")
