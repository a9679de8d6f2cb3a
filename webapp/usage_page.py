"""Usage: a month's spend by model and by day, the images made, and the budget."""

from flask import Blueprint, g, render_template, request

from jobs import budget
from jobs.errors import ValidationError
from webapp import usage_query
from webapp.htmx import install_error_handlers

bp = Blueprint("usage_page", __name__, url_prefix="/writer")
install_error_handlers(bp)


@bp.get("/usage")
def usage():
    """This month's figures (or ?month=YYYY-MM's), beside the month before's spend."""
    error, status = None, 200
    try:
        start = usage_query.parse_month(request.args.get("month"))
    except ValidationError as exc:
        # The page still answers, with this month, so a mistyped link is one click from what was meant.
        error, status, start = exc.message, 400, usage_query.parse_month(None)
    this_month = budget.month_of()[0]
    before = usage_query.previous_month(start)
    following = budget.month_of(start)[1]
    return render_template(
        "usage/usage.html", usage=usage_query.usage(g.account_id, start), error=error,
        is_this_month=start == this_month, previous=before.strftime("%Y-%m"),
        previous_spent=float(budget.spent(g.account_id, *budget.month_of(before))),
        # No link into a month that has not begun.
        next=following.strftime("%Y-%m") if following <= this_month else None,
    ), status
