"""Webhook deliveries: each attempt to post an account's finished tasks to its webhook, newest first. The
account's managers see their account's; platform admins also any account's (`?account=<id>`)."""

from flask import Blueprint, abort, g, render_template, request

from jobs import webhooks
from models import Account
from webapp.htmx import install_error_handlers
from webapp.inputs import is_id_text
from webapp.runs_page import when

bp = Blueprint("webhooks_page", __name__, url_prefix="/settings/integrations/webhooks")
install_error_handlers(bp)


@bp.before_request
def _managers_and_admins_only():
    if not (g.user.is_manager or g.user.is_admin):
        abort(403)


@bp.get("/deliveries")
def deliveries():
    """The account's latest webhook attempts: task, attempt, answer or error, and when."""
    account = _account()
    rows = [{"row": row, "when": when(row.created_at.isoformat()), "status": _status(row)}
            for row in webhooks.recent_deliveries(account.id)]
    return render_template("webhooks/deliveries.html", account=account, deliveries=rows,
                           own_account=account.id == g.account_id)


def _account() -> Account:
    """The user's own account; an admin may name another. Anyone else naming one gets a 404, as for an
    account that does not exist."""
    asked = request.args.get("account")
    if asked is None or asked == str(g.account_id):
        return Account.get_by_id(g.account_id)
    account = Account.get_or_none(Account.id == int(asked)) if g.user.is_admin and is_id_text(asked) else None
    if account is None:
        abort(404)
    return account


def _status(row) -> str:
    if row.delivered:
        return "delivered"
    if row.status_code is None and row.error is None:
        return "sending"  # the attempt's row is written before its request
    return "failed"
