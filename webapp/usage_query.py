"""The Usage page's and `GET /v1/system/usage/`'s reads: a month's spend from the attempts ledger (what
providers charged, failed images that were answered included), by model and by day, the images
generated and failed, and the budget."""

import datetime as dt

from jobs import budget, image_settings
from jobs.errors import ValidationError
from models import ImageAttempt


def parse_month(text: str | None) -> dt.datetime:
    """The first instant of a `YYYY-MM` month (this month when not given)."""
    if text in (None, ""):
        return budget.month_of()[0]
    try:
        start = dt.datetime.strptime(text, "%Y-%m")
    except (TypeError, ValueError):
        raise ValidationError("month must be YYYY-MM, such as 2026-12.") from None
    if not 2000 <= start.year <= 2100:
        raise ValidationError("month must be YYYY-MM, such as 2026-12.")
    return start


def previous_month(start: dt.datetime) -> dt.datetime:
    return (start - dt.timedelta(days=1)).replace(day=1)


def usage(account_id, start: dt.datetime) -> dict:
    start, end = budget.month_of(start)
    def in_month(column):
        return (column >= start) & (column < end)

    rows = (ImageAttempt.select(ImageAttempt.model, ImageAttempt.cost, ImageAttempt.charged_at,
                                ImageAttempt.outcome, ImageAttempt.ended_at)
            .where((ImageAttempt.account == account_id)
                   & (in_month(ImageAttempt.charged_at) | in_month(ImageAttempt.ended_at))))
    spent, by_model, by_day = 0, {}, {}
    generated = failed = 0
    for row in rows:
        model = by_model.setdefault(row.model or "unknown", {"images": 0, "cost": 0})
        if row.charged_at is not None and start <= row.charged_at < end and row.cost is not None:
            spent += row.cost
            model["cost"] += row.cost
            day = row.charged_at.date().isoformat()
            by_day[day] = by_day.get(day, 0) + row.cost
        if row.ended_at is not None and start <= row.ended_at < end:
            generated += row.outcome == "generated"
            failed += row.outcome == "failed"
            model["images"] += row.outcome == "generated"
    return {
        "month": start.strftime("%Y-%m"),
        "spent": float(spent),
        "images_generated": generated,
        "images_failed": failed,
        "by_model": {name: {"images": m["images"], "cost": float(m["cost"])} for name, m in sorted(by_model.items())
                     if m["images"] or m["cost"]},
        "by_day": {day: float(cost) for day, cost in sorted(by_day.items())},
        "budget": account_budget(account_id).as_dict(),
    }


def account_budget(account_id) -> budget.Budget:
    """This month's budget; an account without working settings has no caps to show."""
    try:
        settings = image_settings.load(account_id, with_key=False)
    except ValidationError:
        return budget.Budget(None, None, budget.spent(account_id, *budget.month_of()), 0)
    return budget.budget_of(account_id, settings)
