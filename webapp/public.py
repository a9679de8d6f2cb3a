"""Published images, login-free: `/p/<key>.<ext>` serves the bytes a public URL names from storage.

The key is unguessable (jobs/publishing.py) and names one stored file, whose bytes never change, so
browsers and CDNs may keep the answer for good. An unknown or expired key is a 404.
"""

import re

from flask import Blueprint, Response, abort, current_app, request, session

from jobs import publishing
from jobs.storage import NotStored, get_storage
from webapp import auth

bp = Blueprint("public", __name__)

_KEY = re.compile(f"[0-9a-f]{{{publishing.KEY_LENGTH}}}")


def init_app(app):
    auth.PUBLIC_ENDPOINTS.add("public.image")  # no session, no token: that is the point of these URLs
    app.register_blueprint(bp)


@bp.after_request
def _no_session_cookie(response):
    # The same answer for every reader, kept by shared caches, must never carry a session cookie: auth
    # has read (and may have refreshed or cleared) a signed-in reader's session before it knew this
    # endpoint needs none. Their session is refreshed on their next page instead.
    session.modified = False
    return response


@bp.get("/p/<key>.<ext>")
def image(key, ext):
    """A published image's bytes (404 for an unknown or expired key)."""
    if not _KEY.fullmatch(key):
        abort(404)
    row = publishing.lookup(key)
    if row is None or publishing.EXTENSIONS.get(row.content_type) != ext:
        abort(404)
    try:
        stored = get_storage(current_app.config["SERVICE_CONFIG"]).load(row.file_path)
    except NotStored:
        abort(404)
    headers = {"ETag": f'"{stored.etag}"', "Cache-Control": "public, max-age=31536000, immutable",
               "X-Content-Type-Options": "nosniff",
               # Embedded by other sites' pages, which may require it (Cross-Origin-Embedder-Policy).
               "Cross-Origin-Resource-Policy": "cross-origin"}
    if request.if_none_match.contains(stored.etag):
        return Response(status=304, headers=headers)
    return Response(stored.data, content_type=row.content_type, headers=headers)
