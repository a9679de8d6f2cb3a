"""Account (managers only): the account's users and API tokens, with revoke and remove buttons."""

from flask import Blueprint, abort, flash, g, redirect, render_template, url_for

from models import ApiToken, User
from webapp import accounts

bp = Blueprint("account_page", __name__, url_prefix="/account")


@bp.before_request
def _managers_only():
    if not g.user.is_manager:
        abort(403)


@bp.get("")
def account():
    """The account's users and every API token they hold (names and dates, never the tokens)."""
    users = list(User.select().where(User.account == g.account_id).order_by(User.email))
    tokens = list(ApiToken.select(ApiToken, User).join(User).where(User.account == g.account_id)
                  .order_by(User.email, ApiToken.created_at))
    return render_template("account/account.html", users=users, tokens=tokens)


@bp.post("/tokens/<int:token_id>/revoke")
def revoke_token(token_id):
    """Revoke one of the account's tokens; another account's token answers like a missing one."""
    if not accounts.revoke_token(token_id, account_id=g.account_id):
        abort(404)
    flash("Token revoked: it stops working at once.", "success")
    return redirect(url_for(".account"))


@bp.post("/users/<int:user_id>/delete")
def delete_user(user_id):
    """Remove a user of the account with its tokens; its sessions end at once."""
    user = User.get_or_none((User.id == user_id) & (User.account == g.account_id))
    if user is None:
        abort(404)
    try:
        accounts.delete_user(user)
    except ValueError as refused:
        flash(str(refused), "error")
        return redirect(url_for(".account"))
    flash(f"Removed {user.email}.", "success")
    return redirect(url_for(".account"))
