"""Login, logout and who is asking: session users for pages, bearer tokens for scripts."""

import time
from urllib.parse import urlsplit

from flask import Blueprint, Response, current_app, flash, g, redirect, render_template, request, session, url_for

from jobs.connection import get_redis
from models import User
from webapp import accounts, login_throttle
from webapp.errors import json_error
from webapp.htmx import is_htmx

bp = Blueprint("auth", __name__)

PUBLIC_ENDPOINTS = {"auth.login", "static", "pages.healthz"}


def init_app(app):
    @app.before_request
    def _load_user():
        g.user = None
        g.via_token = False
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            g.user = accounts.user_for_token(header[len("Bearer "):].strip())
            g.via_token = g.user is not None
        elif session.get("user_id"):
            g.user = _session_user()
        g.account_id = g.user.account_id if g.user else None
        if g.user is None and request.endpoint not in PUBLIC_ENDPOINTS:
            if wants_json():
                return json_error("Authentication required.", "AuthError", 401)
            if is_htmx():
                # A fragment request must not follow a redirect and swap the login page into the panel:
                # htmx reloads the page, whose own request then redirects to the login with next= the page.
                return Response(status=401, headers={"HX-Refresh": "true"})
            return redirect(url_for("auth.login", next=request.full_path))
        return None


def wants_json() -> bool:
    return request.path.startswith("/v1/")


def _session_user() -> User | None:
    """The session's user, unless the session has ended: logged out (on any device), or idle too long."""
    user = User.get_or_none(User.id == session["user_id"])
    idle_limit = current_app.config["SESSION_IDLE_SECONDS"]
    now = int(time.time())
    if user is None or session.get("version") != user.session_version \
            or now - int(session.get("seen", 0)) > idle_limit:
        session.clear()
        return None
    if now - int(session.get("seen", 0)) > 60:  # refreshed once a minute, not on every request
        session["seen"] = now
    return user


def _safe_next(target: str | None) -> str:
    """Only a same-site path, so the login form cannot bounce a user to another site. Browsers drop
    tabs and newlines from URLs ("/\t/evil.test" becomes "//evil.test"), so any control character,
    space or backslash refuses the target."""
    if target and target.startswith("/") and all(0x20 < ord(c) < 0x7F and c != "\\" for c in target):
        parts = urlsplit(target)
        if not (parts.scheme or parts.netloc or target.startswith("//")):
            return target
    return url_for("pages.index")


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Email + password login form."""
    if request.method == "POST":
        email, address = request.form.get("email", ""), request.remote_addr or ""
        redis = get_redis()
        refused = login_throttle.refusal(redis, email, address)
        if refused:
            flash(refused, "error")
            return render_template("auth/login.html"), 429
        user = accounts.authenticate(email, request.form.get("password", ""))
        if user:
            login_throttle.succeeded(redis, email)
            session.clear()
            session.update(user_id=user.id, version=user.session_version, seen=int(time.time()))
            return redirect(_safe_next(request.args.get("next")))
        login_throttle.failed(redis, email, address)
        flash("Wrong email or password.", "error")
        return render_template("auth/login.html"), 401
    return render_template("auth/login.html")


@bp.route("/logout", methods=["POST"])
def logout():
    """End every session of this user (a copied cookie stops working too)."""
    if g.user is not None and not g.via_token:
        User.update(session_version=User.session_version + 1).where(User.id == g.user.id).execute()
    session.clear()
    return redirect(url_for("auth.login"))
