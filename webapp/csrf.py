"""CSRF protection for every state-changing request made with a session cookie.

Forms carry `csrf_token`; htmx and rq-dashboard send the `X-CSRFToken` header. Requests that
authenticate with a bearer token carry no ambient credentials, so they need no token.
"""

import hmac
import secrets

from flask import abort, g, request, session

from webapp.errors import json_error

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


def csrf_token() -> str:
    if "csrf_token" not in session:
        session["csrf_token"] = secrets.token_urlsafe(32)
    return session["csrf_token"]


def init_app(app):
    app.jinja_env.globals["csrf_token"] = csrf_token

    @app.before_request
    def _check_csrf():
        if request.method in SAFE_METHODS or getattr(g, "via_token", False):
            return None
        sent = request.form.get("csrf_token") or request.headers.get("X-CSRFToken") or ""
        expected = session.get("csrf_token", "")
        if expected and hmac.compare_digest(sent, expected):
            return None
        if request.path.startswith("/v1/"):
            return json_error("Missing or invalid CSRF token.", "CSRFError", 403)
        abort(403, description="Missing or invalid CSRF token; reload the page and try again.")
