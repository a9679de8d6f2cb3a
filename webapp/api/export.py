"""An article out of the service: its HTML with the images placed, and its images as a ZIP."""

import json
import logging
import re
import tempfile
import zipfile

from flask import Response, current_app, g, request
from werkzeug.wsgi import wrap_file

from jobs import publishing
from jobs.errors import ValidationError
from jobs.storage import NotStored, get_storage
from models import Images
from webapp import writer
from webapp.api import bp
from webapp.article_html import article_html

log = logging.getLogger(__name__)

MAX_EXPORT_BYTES = 500 * 1024 * 1024  # the images of one article; a ZIP above it is refused
IN_MEMORY_BYTES = 16 * 1024 * 1024  # a bigger ZIP is built in a temporary file, not in the dyno's memory


def generated_images(account_id: int, content_id: int) -> list:
    """The article's generated images, in the order they appear: featured, in-article, desktop, mobile."""
    query = Images.for_account(account_id).where((Images.content == content_id) & (Images.status == "generated"))
    return list(query.order_by(Images.type_rank(), Images.position, Images.id))


@bp.get("/writer/content/<int:content_id>/html/")
def content_html(content_id):
    """The article's body with its generated images placed, as HTML to publish."""
    content = writer.get_content(g.account_id, content_id)
    html = article_html(content, generated_images(g.account_id, content.id), base_url=request.host_url)
    return Response(html, content_type="text/html; charset=utf-8")


@bp.get("/writer/content/<int:content_id>/export.zip")
def content_zip(content_id):
    """The article's generated images under their file names, with manifest.json describing them."""
    content = writer.get_content(g.account_id, content_id)
    images = [i for i in generated_images(g.account_id, content.id) if i.file_path]
    total = sum(i.file_size or 0 for i in images)
    if total > MAX_EXPORT_BYTES:
        raise ValidationError(f"The article's images take {total // 2**20} MB, more than the "
                              f"{MAX_EXPORT_BYTES // 2**20} MB a download may hold; fetch them one by one.")
    storage = get_storage(current_app.config["SERVICE_CONFIG"])
    archive = tempfile.SpooledTemporaryFile(max_size=IN_MEMORY_BYTES)  # noqa: SIM115 - the response closes it
    manifest, names = [], set()
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as zf:  # images are compressed already
        for image in images:
            try:
                data = storage.load(image.file_path).data
            except NotStored:
                log.warning("image %s is generated but its file %s is missing; left out of the export", image.id,
                            image.file_path)
                continue
            name = _unique(image.file_name or f"image-{image.id}.{image.image_format}", names)
            info = zipfile.ZipInfo(name, date_time=image.updated_at.timetuple()[:6])
            zf.writestr(info, data)
            manifest.append(_entry(image, name))
        zf.writestr(zipfile.ZipInfo("manifest.json", date_time=content.updated_at.timetuple()[:6]),
                    json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", compress_type=zipfile.ZIP_DEFLATED)
    size = archive.tell()
    archive.seek(0)
    filename = f"{publishing.article_slug(content)}-images.zip"
    return Response(wrap_file(request.environ, archive), mimetype="application/zip", direct_passthrough=True,
                    headers={"Content-Disposition": f'attachment; filename="{filename}"',
                             "Content-Length": str(size), "Cache-Control": "private, no-store"})


def _entry(image, name: str) -> dict:
    return {"id": image.id, "image_type": image.image_type, "position": image.position, "file_name": name,
            "alt_text": image.alt_text, "caption": image.caption, "width": image.width, "height": image.height,
            "prompt": image.generated_prompt if image.generated_prompt is not None else image.prompt,
            "model": image.model, "cost": float(image.cost) if image.cost is not None else None}


def _unique(name: str, names: set) -> str:
    """A name no other entry has, that cannot lead out of the folder it is unpacked in."""
    name = re.sub(r"[^A-Za-z0-9._-]", "-", name).lstrip(".-") or "image"
    stem, dot, extension = name.rpartition(".")
    if not dot:
        stem, extension = name, ""
    candidate, n = name, 1
    while candidate in names or candidate == "manifest.json":
        n += 1
        candidate = f"{stem}-{n}{dot}{extension}"
    names.add(candidate)
    return candidate
