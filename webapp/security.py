"""Transport-level defaults: HTTPS seen through the platform's router, Secure cookies over HTTPS,
headers that keep pages out of frames and browsers from sniffing types, and a Content Security Policy
that lets no script run but the app's own files — so markup that slips into a page (a provider's error
text, a job's arguments in rq-dashboard) cannot act with a staff member's or an admin's session."""

import base64
import hashlib
import re

from flask import request
from flask.sessions import SecureCookieSessionInterface
from werkzeug.middleware.proxy_fix import ProxyFix


class _SessionInterface(SecureCookieSessionInterface):
    def get_cookie_secure(self, app) -> bool:
        # Heroku-style routers end TLS and say so in X-Forwarded-Proto; a cookie sent over HTTPS
        # must never travel over plain HTTP afterwards.
        return bool(app.config["SESSION_COOKIE_SECURE"] or request.is_secure)


def init_app(app):
    # Trust one proxy hop for the scheme only (the router in front of the web dyno).
    app.wsgi_app = ProxyFix(app.wsgi_app, x_proto=1)
    app.session_interface = _SessionInterface()

    @app.after_request
    def _headers(response):
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if response.mimetype == "text/html" and not response.direct_passthrough:
            response.headers.setdefault("Content-Security-Policy", content_security_policy(response))
        return response


# Inline style attributes (progress bar widths) and htmx's indicator style are allowed; scripts are not.
_POLICY = ("default-src 'self'; script-src 'self'{extra}; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
           "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
_INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)(?P<attrs>[^>]*)>(?P<body>.*?)</script>", re.S | re.I)


def content_security_policy(response) -> str:
    """The app's pages run only its own script files. rq-dashboard's pages also need its few inline
    scripts (allowed by their hashes, computed from the page it rendered) and its templates' compiled
    functions ('unsafe-eval'); an injected <script> or onerror= attribute still never runs."""
    if not request.path.startswith("/rq"):
        return _POLICY.format(extra="")
    hashes = []
    for script in _INLINE_SCRIPT.finditer(response.get_data(as_text=True)):
        kind = re.search(r"\btype=[\"']?([^\"'\s>]+)", script.group("attrs"))
        if kind and kind.group(1).lower() not in ("text/javascript", "application/javascript", "module"):
            continue  # a template (type="text/template") is data, not script
        digest = base64.b64encode(hashlib.sha256(script.group("body").encode()).digest()).decode()
        hashes.append(f"'sha256-{digest}'")
    return _POLICY.format(extra=" 'unsafe-eval' " + " ".join(hashes) if hashes else " 'unsafe-eval'")
