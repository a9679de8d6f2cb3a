"""Articles (content) with their image prompts: list, create, import, edit, delete."""

from flask import g, request

from jobs.errors import ValidationError
from models import Content
from webapp import importer, writer
from webapp.api import bp, json_body
from webapp.api.serializers import content_json, image_json, page_json, page_request

MAX_QUERY = 200


def _contents_json(rows) -> list:
    images = writer.images_of(g.account_id, [c.id for c in rows])
    return [content_json(c, images[c.id]) for c in rows]


@bp.get("/writer/content/")
def list_content():
    """The account's articles, newest first, a page at a time; `q` keeps those whose title has every word."""
    query = Content.for_account(g.account_id)
    words = request.args.get("q", "").split()
    if sum(map(len, words)) > MAX_QUERY:
        raise ValidationError(f"q is too long; at most {MAX_QUERY} characters are searched.")
    for word in words:
        query = query.where(Content.title.contains(word))
    page, per_page = page_request()
    return page_json(query.order_by(Content.id.desc()), page, per_page, _contents_json)


@bp.post("/writer/content/")
def create_content():
    """Create an article with its image prompts."""
    content = writer.create_content(g.account_id, json_body())
    return content_json(content, writer.content_images(g.account_id, content.id)), 201


@bp.post("/writer/content/import/")
def import_content():
    """Create many articles at once (JSON `{"articles": [...]}` or a CSV file): all of them, or none."""
    if request.mimetype == "text/csv":
        try:
            text = request.get_data().decode("utf-8-sig")
        except UnicodeDecodeError:
            raise ValidationError("The CSV must be UTF-8 text.") from None
        articles = importer.parse_csv(text)
    else:
        articles = importer.parse_json(json_body())
    return {"created": importer.create_all(g.account_id, articles)}, 201


@bp.get("/writer/content/<int:content_id>/")
def get_content(content_id):
    """One article with its images."""
    content = writer.get_content(g.account_id, content_id)
    return content_json(content, writer.content_images(g.account_id, content.id))


@bp.patch("/writer/content/<int:content_id>/")
def edit_content(content_id):
    """Edit an article's title, meta_title and/or body."""
    content = writer.update_content(g.account_id, content_id, json_body())
    return content_json(content, writer.content_images(g.account_id, content.id))


@bp.delete("/writer/content/<int:content_id>/")
def delete_content(content_id):
    """Delete an article and its images (409 while any of them is being generated)."""
    writer.delete_content(g.account_id, content_id)
    return "", 204


@bp.post("/writer/content/<int:content_id>/images/")
def add_image(content_id):
    """Add an image prompt to an article."""
    return image_json(writer.add_image(g.account_id, content_id, json_body())), 201
