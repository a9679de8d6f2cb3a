"""Content with image prompts."""

from flask import g

from webapp import writer
from webapp.api import bp, json_body
from webapp.api.serializers import content_json


@bp.post("/writer/content/")
def create_content():
    """Create an article with its image prompts."""
    content = writer.create_content(g.account_id, json_body())
    return content_json(content, writer.content_images(g.account_id, content.id)), 201


@bp.get("/writer/content/<int:content_id>/")
def get_content(content_id):
    """One article with its images."""
    content = writer.get_content(g.account_id, content_id)
    return content_json(content, writer.content_images(g.account_id, content.id))
