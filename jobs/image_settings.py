"""An account's image-generation settings (`IntegrationSettings`): validation, defaults, and the
API key, which is encrypted at rest and only ever decrypted in memory for a provider call; the same for
the webhook's secret, which is decrypted only to sign a delivery (jobs.webhooks)."""

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import lru_cache

from config import load_config
from jobs import outbound
from jobs.errors import ValidationError
from jobs.limits import Limits
from jobs.providers import PROVIDERS
from jobs.providers.base import Credentials, ProviderError
from jobs.providers.catalog import PLACEMENT_PRESETS, ModelSpec, ModelStatus, parse_size
from models import IntegrationSettings, ModelNotice, utcnow
from secret_box import SecretBox, SecretBoxError

INTEGRATION = "image_generation"
IMAGE_TYPES = ("realistic", "artistic", "cartoon")
FORMATS = ("webp", "jpg", "png")
PLACEMENTS = tuple(PLACEMENT_PRESETS)  # featured, in_article, desktop, mobile
BACKGROUNDS_NEEDING_ALPHA = ("transparent",)
# Settings saved before sizes per placement chose the in-article shape by orientation.
_ORIENTATION_PRESETS = {"square": "1:1", "landscape": "3:2", "portrait": "2:3"}

DEFAULTS = {
    "provider": "placeholder",
    "model": "placeholder-v1",
    "base_url": "",
    "image_type": "realistic",
    "max_in_article_images": 3,
    "image_format": "webp",
    "desktop_enabled": False,
    "mobile_enabled": False,
    # None: the model's default quality. Only models with quality levels take one.
    "quality": None,
    "background": "opaque",
    # Placement → "WIDTHxHEIGHT"; a placement not set uses the model's default for it.
    "sizes": {},
    # USD per image, for an OpenAI-compatible server (we have no price table for it).
    "price_per_image": None,
    # Per provider key: parallel calls (1 keeps the plan's one-at-a-time rule; None = auto, adapting
    # to the provider's answers) and calls per minute (None = no limit known).
    "max_concurrent_calls": 1,
    "calls_per_minute": None,
    # USD; None: no cap. Monthly counts what providers charged this month (UTC), per run the estimate.
    "monthly_budget": None,
    "run_budget": None,
    # Where a task's end is posted (jobs.webhooks); None: nowhere. Its secret is a column of its own.
    "webhook_url": None,
}
WEBHOOK_SECRET_LENGTH = (16, 200)  # a secret the manager brings; the server's own are 43 characters


@lru_cache(maxsize=4)
def _box(keys: tuple) -> SecretBox:
    return SecretBox(keys)


def secret_box() -> SecretBox:
    return _box(load_config().encryption_keys)


@dataclass(frozen=True)
class ImageSettings:
    provider: str
    model: str
    spec: ModelSpec
    image_type: str
    image_format: str
    quality: str | None
    background: str | None
    sizes: dict  # placement → (width, height)
    price_per_image: Decimal | None
    end_user: str
    max_in_article_images: int
    desktop_enabled: bool
    mobile_enabled: bool
    limits: Limits
    credentials: Credentials
    monthly_budget: Decimal | None = None
    run_budget: Decimal | None = None

    def estimate(self, placement: str) -> Decimal | None:
        """One image's price before its call, at this placement's size and the chosen quality."""
        if self.price_per_image is not None:
            return self.price_per_image
        width, height = self.sizes[placement]
        return self.spec.estimate(width, height, self.quality)


def settings_row(account_id) -> IntegrationSettings | None:
    return IntegrationSettings.get_or_none(
        (IntegrationSettings.account == account_id) & (IntegrationSettings.integration_type == INTEGRATION)
    )


def today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def model_status(account_id, provider_name: str, spec: ModelSpec) -> ModelStatus:
    """The model's lifecycle for this account: the catalog's, or a shutdown date the provider's model
    list announced to the account's key (check-models)."""
    notice = ModelNotice.get_or_none((ModelNotice.account == account_id) & (ModelNotice.provider == provider_name)
                                     & (ModelNotice.model == spec.name))
    return spec.status(today(), notice.shutdown_date if notice else None)


def end_user_id(account_id) -> str:
    """A stable id for the account that names nothing about it (OpenAI's `user`, for abuse tracking)."""
    digest = hmac.new(load_config().secret_key.encode(), f"account:{account_id}".encode(), hashlib.sha256)
    return "acct_" + digest.hexdigest()[:24]


def spec_or_none(provider, model) -> ModelSpec | None:
    try:
        return provider.model_spec(model)
    except ProviderError:  # an unknown model: validate() says so
        return None


def effective_sizes(config: dict, spec: ModelSpec | None) -> dict:
    """Placement → "WxH": what the account chose, else the model's default for the placement."""
    chosen = dict(config.get("sizes") or {})
    orientation = config.get("in_article_orientation")
    if "in_article" not in chosen and orientation in _ORIENTATION_PRESETS and spec is not None:
        chosen["in_article"] = "{}x{}".format(*spec.size_rule.preset(_ORIENTATION_PRESETS[orientation]))
    return {placement: chosen.get(placement) or ("{}x{}".format(*spec.default_size(placement)) if spec else None)
            for placement in PLACEMENTS}


def public_view(row: IntegrationSettings | None) -> dict:
    """The settings as the API and the page show them: never the key or the webhook secret, only whether
    they are set."""
    config = {**DEFAULTS, **(row.config if row else {})}
    provider = PROVIDERS.get(config["provider"])
    spec = spec_or_none(provider, config["model"]) if provider else None
    status = model_status(row.account_id, config["provider"], spec) if row and spec else None
    view = {k: config[k] for k in DEFAULTS}
    return {
        **view,
        "quality": config["quality"] or (spec.default_quality if spec else None),
        "sizes": effective_sizes(config, spec),
        "model_status": status.as_dict() if status else {"state": "active", "shutdown_date": None,
                                                         "replacement": None},
        "is_active": bool(row and row.is_active),
        "api_key_set": bool(row and row.api_key_encrypted),
        "api_key_last4": (row.api_key_last4 if row and row.api_key_encrypted else None),
        "webhook_secret_set": bool(row and row.webhook_secret_encrypted),
    }


def load(account_id, *, announced: bool = True, with_key: bool = True) -> ImageSettings:
    """The active settings ready for a provider call; ValidationError says what to fix.

    `announced=False` checks the catalog's lifecycle only, not the shutdown dates the provider
    announced to this account (a query): jobs of a task whose request already checked them.
    `with_key=False` leaves the key encrypted (credentials without it): pages that only price images."""
    row = settings_row(account_id)
    if row is None or not row.is_active:
        raise ValidationError("No active image-generation settings: open Settings → Image generation, "
                              "choose a provider and save.")
    config = {**DEFAULTS, **row.config}
    provider = PROVIDERS.get(config["provider"])
    if provider is None:
        raise ValidationError(f"Image provider {config['provider']!r} is not supported; choose one of: "
                              + ", ".join(PROVIDERS) + ".")
    spec = spec_or_none(provider, config["model"])
    if spec is None:
        raise ValidationError(f"Model {config['model']!r} is not available for {provider.label}; choose one "
                              "of: " + ", ".join(provider.offered_models()) + ".")
    status = model_status(account_id, config["provider"], spec) if announced else spec.status(today())
    if status.state == "retired":
        raise ValidationError(status.retired_sentence(provider.label, spec.name))
    if provider.requires_api_key and not row.api_key_encrypted:
        raise ValidationError(f"{provider.label} needs an API key: add it in Settings → Image generation.")
    price = config["price_per_image"]
    return ImageSettings(
        provider=config["provider"], model=config["model"], spec=spec, image_type=config["image_type"],
        image_format=config["image_format"], quality=config["quality"] or spec.default_quality,
        background=config["background"] if spec.backgrounds else None,
        sizes={placement: parse_size(size) for placement, size in effective_sizes(config, spec).items()},
        price_per_image=Decimal(str(price)) if price is not None else None, end_user=end_user_id(account_id),
        max_in_article_images=int(config["max_in_article_images"]),
        desktop_enabled=bool(config["desktop_enabled"]), mobile_enabled=bool(config["mobile_enabled"]),
        limits=Limits(key=f"{account_id}:{config['provider']}", max_concurrent=config["max_concurrent_calls"],
                      per_minute=config["calls_per_minute"]),
        credentials=Credentials(api_key=_key(row) if with_key else None, base_url=config["base_url"] or None),
        monthly_budget=_decimal(config["monthly_budget"]), run_budget=_decimal(config["run_budget"]),
    )


def _key(row: IntegrationSettings) -> str | None:
    if not row.api_key_encrypted:
        return None
    try:
        return secret_box().decrypt(row.api_key_encrypted)
    except SecretBoxError:
        raise ValidationError("The stored API key cannot be read with this server's ENCRYPTION_KEYS (were they "
                              "changed?): enter the key again in Settings → Image generation.") from None


def _decimal(value) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _choice(data, errors, name, choices):
    value = data[name]
    if value not in choices:
        errors[name] = f"Choose one of: {', '.join(choices)}."
    return value


def _int(data, errors, name, low, high):
    value = data[name]
    text = str(value).strip()
    # isascii: "²".isdigit() is true, but int("²") fails.
    if isinstance(value, bool) or not isinstance(value, int | str) or not (text.isascii() and text.isdigit()) \
            or not low <= int(text) <= high:
        errors[name] = f"A whole number from {low} to {high}."
        return value
    return int(value)


def _optional_int(data, errors, name, low, high):
    """Blank (or "auto") means no fixed limit."""
    if data[name] is None or (isinstance(data[name], str) and data[name].strip().lower() in ("", "auto")):
        return None
    return _int(data, errors, name, low, high)


def _flag(data, errors, name):
    value = data[name]
    if isinstance(value, str) and value.lower() in {"true", "on", "1", "false", "off", "0", ""}:
        return value.lower() in {"true", "on", "1"}
    if not isinstance(value, bool):
        errors[name] = "true or false."
    return bool(value)


def validate(data: dict, current: dict, account_id=None) -> tuple[dict, dict]:
    """Merge `data` over `current` and check every field; return (config, errors by field).

    A value that was sent and does not fit is an error naming the rule; a value carried over from
    before that does not fit a newly chosen model falls back to that model's default (as switching
    provider picks its first model), and the answer shows it."""
    if not isinstance(data, dict):
        raise ValidationError("Send the settings as a JSON object.")
    sent = {k: v for k, v in data.items() if k in DEFAULTS}
    merged = {**DEFAULTS, **current, **sent}
    orientation = merged.pop("in_article_orientation", None)
    if orientation in _ORIENTATION_PRESETS and "in_article" not in (current.get("sizes") or {}):
        # Saved before sizes per placement: the shape chosen then becomes the in-article size now.
        provider = PROVIDERS.get(merged["provider"])
        spec = spec_or_none(provider, merged["model"]) if provider else None
        if spec is not None:
            size = "{}x{}".format(*spec.size_rule.preset(_ORIENTATION_PRESETS[orientation]))
            current = {**current, "sizes": {**(current.get("sizes") or {}), "in_article": size}}
    errors: dict = {}
    provider = PROVIDERS.get(merged["provider"])
    spec = None
    if provider is None:
        errors["provider"] = "Choose one of: " + ", ".join(PROVIDERS) + "."
    else:
        if "model" not in sent and "provider" in sent and spec_or_none(provider, merged["model"]) is None:
            merged["model"] = next(iter(provider.offered_models()), "")  # switching provider picks its first model
        spec = _model_spec(provider, merged["model"], errors, account_id)
    _choice(merged, errors, "image_type", IMAGE_TYPES)
    _choice(merged, errors, "image_format", FORMATS)
    merged["max_in_article_images"] = _int(merged, errors, "max_in_article_images", 1, 5)
    merged["max_concurrent_calls"] = _optional_int(merged, errors, "max_concurrent_calls", 1, 16)
    merged["calls_per_minute"] = _optional_int(merged, errors, "calls_per_minute", 1, 100_000)
    merged["desktop_enabled"] = _flag(merged, errors, "desktop_enabled")
    merged["mobile_enabled"] = _flag(merged, errors, "mobile_enabled")
    if spec is not None:
        merged["quality"] = _quality(merged, sent, errors, spec)
        merged["background"] = _background(merged, sent, errors, spec)
        merged["sizes"] = _sizes(merged, sent, errors, spec, current)
    merged["price_per_image"] = _price(merged, errors, provider)
    for name in ("monthly_budget", "run_budget"):
        merged[name] = _budget(merged, errors, name)
    base_url = merged["base_url"].strip(" ") if isinstance(merged["base_url"], str) else None
    if base_url is None:
        errors["base_url"] = "A text value."
    elif base_url:
        errors.update(_base_url_errors(base_url, changed=base_url.rstrip("/") != (current.get("base_url") or "")))
    elif provider is not None and provider.default_base_url is None and provider.name != "placeholder":
        errors["base_url"] = f"{provider.label} has no default address: give the server's base URL."
    merged["base_url"] = (base_url or "").rstrip("/")
    merged["webhook_url"] = _webhook_url(merged, errors, current)
    return merged, errors


def _base_url_errors(base_url: str, *, changed: bool) -> dict:
    """A base URL must be a plain http(s) URL, and (when it changes) one whose host resolves to public
    addresses only, or to ones the operator allows: the account's key is sent there."""
    problem = outbound.url_problem(base_url)
    if problem:
        return {"base_url": f"Refused: {problem}. Give an http(s) URL such as https://api.openai.com/v1."}
    if changed:
        try:
            outbound.check(base_url)
        except outbound.OutboundRefused as refused:
            return {"base_url": f"Refused: {refused}."}
    return {}


def _webhook_url(merged, errors, current) -> str | None:
    """None (or blank) for no webhook; else a URL checked like a base URL: a task's results go there."""
    value = merged["webhook_url"]
    if value is None or (isinstance(value, str) and not value.strip(" ")):
        return None
    if not isinstance(value, str) or len(value) > 2000:
        errors["webhook_url"] = "An http(s) URL of at most 2000 characters, or blank for no webhook."
        return value
    url = value.strip(" ")
    if "?" in url or "#" in url:
        errors["webhook_url"] = ("Refused: it has a query or a fragment. Give the address alone: each delivery "
                                 "is signed, so the URL needs no token in it.")
        return url
    problem = outbound.url_problem(url)
    if problem:
        errors["webhook_url"] = f"Refused: {problem}. Give an http(s) URL such as https://example.com/hooks/images."
    elif url != current.get("webhook_url"):
        try:
            outbound.check(url)
        except outbound.OutboundRefused as refused:
            errors["webhook_url"] = f"Refused: {refused}."
    return url


def _model_spec(provider, model, errors, account_id) -> ModelSpec | None:
    spec = spec_or_none(provider, model) if isinstance(model, str) else None
    if spec is None:
        offered = ", ".join(provider.offered_models())
        if provider.custom_models:
            errors["model"] = (f"Not a model name {provider.label} takes" + (f"; for example: {offered}." if offered
                               else ": letters, digits and . _ : / @ + - (at most 100)."))
        else:
            errors["model"] = f"Not a {provider.label} model; choose one of: {offered}."
        return None
    status = model_status(account_id, provider.name, spec) if account_id else spec.status(today())
    if status.state == "retired":
        errors["model"] = status.retired_sentence(provider.label, spec.name)
        return None
    return spec


def _quality(merged, sent, errors, spec: ModelSpec):
    value = merged["quality"]
    if value in (None, ""):
        return None
    if value in spec.qualities:
        return value
    if "quality" in sent:
        errors["quality"] = (f"{spec.label} takes quality " + ", ".join(spec.qualities) + "."
                             if spec.qualities else f"{spec.label} has no quality levels; leave it blank.")
    return None


def _background(merged, sent, errors, spec: ModelSpec):
    value = merged["background"] or "opaque"
    if not spec.backgrounds:
        return DEFAULTS["background"]
    if value not in spec.backgrounds:
        if "background" in sent:
            errors["background"] = "Choose one of: " + ", ".join(spec.backgrounds) + "."
        return DEFAULTS["background"]
    if value in BACKGROUNDS_NEEDING_ALPHA and merged["image_format"] == "jpg":
        errors["background"] = "A transparent background needs the PNG or WebP format."
    return value


def _sizes(merged, sent, errors, spec: ModelSpec, current) -> dict:
    """Placement → "WxH", each checked against the model's size rule."""
    given = sent.get("sizes", {})
    if not isinstance(given, dict) or any(k not in PLACEMENTS for k in given):
        errors["sizes"] = "An object with any of: " + ", ".join(PLACEMENTS) + ", each \"WIDTHxHEIGHT\"."
        return dict(current.get("sizes") or {})
    kept = {**(current.get("sizes") or {}), **given}
    sizes = {}
    for placement, text in kept.items():
        if text in (None, ""):
            continue  # blank: the model's default
        size = parse_size(text)
        problem = spec.size_rule.problem(*size) if size else f"{text!r} is not WIDTHxHEIGHT, such as 1536x1024."
        if problem is None:
            sizes[placement] = "{}x{}".format(*size)
        elif placement in given:
            errors[f"sizes.{placement}"] = problem
    return sizes


def _price(merged, errors, provider):
    value = merged["price_per_image"]
    if provider is None or not provider.custom_models or provider.models or value in (None, ""):
        return None
    try:
        price = Decimal(str(value).strip())
    except InvalidOperation:
        price = None
    if price is None or not price.is_finite() or not 0 <= price <= 10:
        errors["price_per_image"] = "A price in USD from 0 to 10, such as 0.01."
        return value
    return str(price)


def _budget(merged, errors, name):
    value = merged[name]
    if value in (None, ""):
        return None
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        amount = None
    if isinstance(value, bool) or amount is None or not amount.is_finite() or not 0 <= amount <= 1_000_000:
        errors[name] = "An amount in USD from 0 to 1000000, such as 25, or blank for no cap."
        return value
    return float(amount)  # JSON has no decimals; a float holds any cap typed to the cent exactly enough


def save(account_id, data: dict) -> tuple[dict, dict]:
    """Validate and store; the key is write-only (blank keeps the old one, unless the provider or the
    base URL changes). Return (view, errors).

    The webhook secret is write-only too: `webhook_secret` sets one the manager chose; otherwise one is
    made when a URL is set and there is none yet, or when `new_webhook_secret` is true, and only then is
    it in the view returned (`"webhook_secret"`), that once. No URL, no secret."""
    row = settings_row(account_id)
    config, errors = validate(data, row.config if row else {}, account_id)
    api_key = data.get("api_key")
    if api_key is not None and not isinstance(api_key, str):
        errors["api_key"] = "A text value."
    webhook_secret = _webhook_secret(data, errors, config)
    new_webhook_secret = _flag({"new_webhook_secret": data.get("new_webhook_secret", False)}, errors,
                               "new_webhook_secret")
    if new_webhook_secret and not config["webhook_url"]:
        errors["new_webhook_secret"] = "Give a webhook URL first: the secret signs what is sent there."  # noqa: S105
    is_active = data.get("is_active", row.is_active if row else True)
    if isinstance(is_active, str) and is_active.lower() in {"true", "on", "1", "false", "off", "0", ""}:
        is_active = is_active.lower() in {"true", "on", "1"}
    if not isinstance(is_active, bool):
        errors["is_active"] = "true or false."
    if errors:
        return public_view(row), errors
    if row is None:
        row = IntegrationSettings(account=account_id, integration_type=INTEGRATION)
    before = {**DEFAULTS, **(row.config or {})}
    row.config = config
    row.is_active = is_active
    if api_key and api_key.strip():
        row.api_key_encrypted = secret_box().encrypt(api_key.strip())
        row.api_key_last4 = api_key.strip()[-4:]
    elif (before["provider"], before["base_url"]) != (config["provider"], config["base_url"]):
        # The key was given for that provider at that address: sending it anywhere else needs the key
        # again, so a changed base URL can never carry the stored key to a server of someone's choosing.
        row.api_key_encrypted = row.api_key_last4 = None
    made = None
    if not config["webhook_url"]:
        row.webhook_secret_encrypted = None
    elif webhook_secret:
        row.webhook_secret_encrypted = secret_box().encrypt(webhook_secret)
    elif new_webhook_secret or not row.webhook_secret_encrypted:
        made = secrets.token_urlsafe(32)
        row.webhook_secret_encrypted = secret_box().encrypt(made)
    row.updated_at = utcnow()
    row.save()
    view = public_view(row)
    if made:
        view["webhook_secret"] = made  # the one time it is shown
    return view, {}


def _webhook_secret(data, errors, config) -> str | None:
    """A secret the manager brings (blank or missing: keep the stored one, or have one made)."""
    value = data.get("webhook_secret")
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    low, high = WEBHOOK_SECRET_LENGTH
    if not isinstance(value, str) or not low <= len(value.strip()) <= high:
        errors["webhook_secret"] = (f"A text of {low} to {high} characters; or leave it out and the server makes "
                                    "one.")
        return None
    if not config["webhook_url"]:
        errors["webhook_secret"] = "Give a webhook URL too: the secret signs what is sent there."  # noqa: S105
        return None
    return value.strip()


def rotate_keys() -> int:
    """Re-encrypt every stored secret (provider keys, webhook secrets) under the newest ENCRYPTION_KEYS
    entry; return how many."""
    box = secret_box()
    count = 0
    for row in IntegrationSettings.select().where(IntegrationSettings.api_key_encrypted.is_null(False)
                                                  | IntegrationSettings.webhook_secret_encrypted.is_null(False)):
        for column in ("api_key_encrypted", "webhook_secret_encrypted"):
            if getattr(row, column):
                setattr(row, column, box.rotate(getattr(row, column)))
                count += 1
        row.save()
    return count
