"""Transport-level defaults: HTTPS seen through the platform's router, Secure cookies over HTTPS,
and headers that keep pages out of frames and browsers from sniffing types."""

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
        return response
