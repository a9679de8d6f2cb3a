"""Budgets: what an account spent this month, what its unfinished images hold, and the gate every
provider call passes.

Spend is what providers charged (the attempts' `cost`, failed images that were answered included),
counted by the month the charge was recorded in (UTC). A request is refused when its estimate is over
what is left; a call is refused when it would pass the monthly cap, counting the estimates of the
account's calls in flight whose charge is not known yet.
"""

import contextlib
import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from peewee import fn

from jobs.errors import AIFunctionError, ValidationError
from models import AITaskLog, ImageAttempt, Images, utcnow

# A call estimated but never charged or ended belongs to a job that died: it stops holding budget then.
STALE_CALL = dt.timedelta(hours=1)
GATE_TIMEOUT = 30


class BudgetExceeded(ValidationError):
    kind = "BudgetExceeded"


class BudgetReached(AIFunctionError):
    """This image's call would pass the monthly cap: it is not made."""


def usd(value) -> str:
    """$0.21, $0.0425: at least cents, at most four decimals."""
    text = f"{Decimal(value or 0):.4f}".rstrip("0")
    whole, _, cents = text.partition(".")
    return f"${whole}.{cents.ljust(2, '0')}"


def month_of(when: dt.datetime | None = None) -> tuple[dt.datetime, dt.datetime]:
    """The first instant of `when`'s month and of the next one (naive UTC, as stored)."""
    when = when or utcnow()
    start = when.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return start, (start + dt.timedelta(days=32)).replace(day=1)


def spent(account_id, start: dt.datetime, end: dt.datetime) -> Decimal:
    total = (ImageAttempt.select(fn.SUM(ImageAttempt.cost))
             .where((ImageAttempt.account == account_id) & (ImageAttempt.charged_at >= start)
                    & (ImageAttempt.charged_at < end))
             .scalar())
    return Decimal(total or 0)


def _in_flight(account_id) -> Decimal:
    """Estimates of the account's calls that have started and not been charged yet."""
    total = (ImageAttempt.select(fn.SUM(ImageAttempt.estimate))
             .where((ImageAttempt.account == account_id) & ImageAttempt.outcome.is_null()
                    & ImageAttempt.charged_at.is_null() & (ImageAttempt.called_at > utcnow() - STALE_CALL))
             .scalar())
    return Decimal(total or 0)


def _held(account_id, settings) -> Decimal:
    """What the account's queued and generating images not charged yet are estimated at: the budget a
    second request must leave to the first."""
    counts = (Images.for_account(account_id).select(Images.image_type, fn.COUNT(Images.id))
              .where(Images.status.in_(["queued", "generating"]) & Images.cost.is_null())
              .group_by(Images.image_type).tuples())
    return sum((settings.estimate(kind) or Decimal(0)) * count for kind, count in counts) or Decimal(0)


@dataclass(frozen=True)
class Budget:
    monthly_limit: Decimal | None
    run_limit: Decimal | None
    spent_this_month: Decimal
    held: Decimal

    @property
    def remaining(self) -> Decimal | None:
        if self.monthly_limit is None:
            return None
        return max(Decimal(0), self.monthly_limit - self.spent_this_month - self.held)

    def as_dict(self) -> dict:
        return {"monthly_limit": _float(self.monthly_limit), "run_limit": _float(self.run_limit),
                "spent_this_month": float(self.spent_this_month), "remaining": _float(self.remaining)}


def _float(value) -> float | None:
    return None if value is None else float(value)


def budget_of(account_id, settings) -> Budget:
    return Budget(monthly_limit=settings.monthly_budget, run_limit=settings.run_budget,
                  spent_this_month=spent(account_id, *month_of()), held=_held(account_id, settings))


def check_request(budget: Budget, estimate: Decimal, count: int) -> None:
    """Refuse a request whose estimate is over the per-run cap or over what is left this month."""
    images = f"{count} image{'' if count == 1 else 's'}"
    if budget.run_limit is not None and estimate > budget.run_limit:
        raise BudgetExceeded(f"These {images} are estimated at {usd(estimate)}, over the {usd(budget.run_limit)} "
                             "budget per run: generate fewer at once, or raise the budget in Settings.")
    if budget.remaining is not None and estimate > budget.remaining:
        raise BudgetExceeded(f"{usd(budget.remaining)} is left of this month's {usd(budget.monthly_limit)} budget, "
                             f"and these {images} are estimated at {usd(estimate)}. Generate fewer, or raise the "
                             "budget in Settings.")


@contextlib.contextmanager
def call_gate(redis, account_id):
    """One account's calls start one at a time through here, and a cancel holds it while it decides which
    images have started: no call can start between a check and its record. Without Redis (a job run
    inline) there is nothing to race."""
    if redis is None:
        yield
        return
    with redis.lock(f"imggen:call-gate:{account_id}", timeout=GATE_TIMEOUT, blocking_timeout=GATE_TIMEOUT):
        yield


def admit_call(redis, account_id, image_id, task_id: str, *, provider, model, estimate: Decimal | None,
               monthly_limit: Decimal | None) -> bool:
    """Record that this image's call starts now, unless its task was canceled (False: the image is let go,
    no call) or the call would pass the monthly cap (BudgetReached)."""
    with call_gate(redis, account_id):
        canceled = (AITaskLog.select(AITaskLog.canceled_at).where(AITaskLog.task_id == task_id).scalar())
        if canceled is not None:
            Images.release_unstarted(account_id, task_id, ids=[image_id])
            return False
        if monthly_limit is not None and estimate:
            used = spent(account_id, *month_of()) + _in_flight(account_id)
            if used + estimate > monthly_limit:
                raise BudgetReached(
                    f"Monthly budget reached: {usd(used)} of this month's {usd(monthly_limit)} is spent or in "
                    f"flight, and this image is estimated at {usd(estimate)}, so it was not generated. Raise "
                    "the budget in Settings, then retry it.")
        Images.calling(account_id, image_id, task_id, provider=provider, model=model, estimate=estimate)
    return True
