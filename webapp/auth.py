"""Login, logout and who is asking: session users for pages, bearer tokens for scripts."""

from functools import wraps

from flask import Blueprint, abort, flash, g, redirect, render_template, request, session, url_for

from models import User
from webapp import accounts
from webapp.errors import json_error

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
            g.user = User.get_or_none(User.id == session["user_id"])
        g.account_id = g.user.account_id if g.user else None
        if g.user is None and request.endpoint not in PUBLIC_ENDPOINTS:
            if wants_json():
                return json_error("Authentication required.", "AuthError", 401)
            return redirect(url_for("auth.login", next=request.full_path))
        return None


def wants_json() -> bool:
    return request.path.startswith("/v1/")


def admin_required(view):
    @wraps(view)
    def wrapped(*args, **kwargs):
        if not g.user.is_admin:
            abort(403)
        return view(*args, **kwargs)

    return wrapped


def _safe_next(target: str | None) -> str:
    # Only same-site paths, so the login form cannot bounce a user to another site.
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return url_for("pages.index")


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Email + password login form."""
    if request.method == "POST":
        user = accounts.authenticate(request.form.get("email", ""), request.form.get("password", ""))
        if user:
            session.clear()
            session["user_id"] = user.id
            return redirect(_safe_next(request.args.get("next")))
        flash("Wrong email or password.", "error")
        return render_template("auth/login.html"), 401
    return render_template("auth/login.html")


@bp.route("/logout", methods=["POST"])
def logout():
    """End the session."""
    session.clear()
    return redirect(url_for("auth.login"))
