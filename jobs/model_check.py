"""Deprecation ahead of time: read each OpenAI account's `GET {base_url}/models` and keep the shutdown
dates it announces, so Settings warns weeks before a model stops working.

Run by `flask --app webapp check-models`, and once a day by the workers (the first to ask each day
enqueues the job; see `schedule_daily`).
"""

import datetime as dt
import logging

from jobs import image_settings
from jobs.providers import PROVIDERS
from jobs.providers.base import ProviderError
from jobs.providers.http import get_json
from models import IntegrationSettings, ModelNotice, utcnow

log = logging.getLogger(__name__)

CHECKED_PROVIDERS = ("openai",)  # the providers whose model list announces shutdown dates
# A schedule marker that lives its day out: not under "imggen:", which tests and resets clear.
DAILY_KEY = "imggen-schedule:check-models"
TIMEOUT = (5.0, 30.0)


def shutdown_dates(payload) -> dict[str, dt.date | None]:
    """Model id → announced shutdown date (None: none announced), from a `/models` answer."""
    found = {}
    entries = payload.get("data") if isinstance(payload, dict) else None
    for entry in entries if isinstance(entries, list) else ():
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
            continue
        date = entry.get("shutdown_date")
        try:
            found[entry["id"]] = dt.date.fromisoformat(date) if isinstance(date, str) else None
        except ValueError:
            found[entry["id"]] = None
    return found


def check_account(row: IntegrationSettings) -> dict[str, dt.date | None]:
    """Read the account's model list with its own key; store what it says of the catalog's models
    and of the account's own model. Raises ProviderError when the list cannot be read."""
    config = {**image_settings.DEFAULTS, **row.config}
    provider = PROVIDERS[config["provider"]]
    api_key = image_settings.secret_box().decrypt(row.api_key_encrypted)
    base_url = (config["base_url"] or provider.default_base_url).rstrip("/")
    answer = get_json(f"{base_url}/models", headers={"Authorization": f"Bearer {api_key}"}, timeout=TIMEOUT,
                      label=provider.label)
    if answer.status != 200:
        raise provider.error_for(answer, api_key, config["model"])
    dates = {model: date for model, date in shutdown_dates(answer.json()).items()
             if model in provider.models or model == config["model"]}
    for model, date in dates.items():
        (ModelNotice.insert(account=row.account_id, provider=provider.name, model=model, shutdown_date=date,
                            checked_at=utcnow())
         .on_conflict(conflict_target=[ModelNotice.account, ModelNotice.provider, ModelNotice.model],
                      update={ModelNotice.shutdown_date: date, ModelNotice.checked_at: utcnow()})
         .execute())
    return dates


def check_all() -> list[tuple[int, str]]:
    """Check every active account with a key for a provider that announces dates; return
    (account id, what was found or why it could not be read) per account."""
    report = []
    rows = IntegrationSettings.select().where(IntegrationSettings.is_active
                                              & IntegrationSettings.api_key_encrypted.is_null(False))
    for row in rows:
        config = {**image_settings.DEFAULTS, **row.config}
        if config["provider"] not in CHECKED_PROVIDERS:
            continue
        try:
            dates = check_account(row)
        except ProviderError as exc:
            log.warning("check-models: account %s: %s", row.account_id, exc.message)
            report.append((row.account_id, f"not checked: {exc.message}"))
            continue
        announced = {m: d for m, d in dates.items() if d}
        mine = announced.get(config["model"])
        summary = f"{config['model']} shuts down on {mine.isoformat()}" if mine else f"{config['model']}: no date"
        report.append((row.account_id, summary))
    return report


def check_models_job() -> list:
    """The daily RQ job."""
    from jobs.runtime import ensure_database
    from models import db

    ensure_database()
    with db.connection_context():
        return check_all()


def schedule_daily(queue) -> bool:
    """Enqueue today's check unless another worker already did (one key per day in Redis)."""
    if not queue.connection.set(DAILY_KEY, utcnow().isoformat(), nx=True, ex=24 * 3600):
        return False
    queue.enqueue(check_models_job, job_id=f"check-models-{utcnow():%Y%m%d}", result_ttl=7 * 24 * 3600,
                  description="check-models: announced shutdown dates of the accounts' models")
    return True
