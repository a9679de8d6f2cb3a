"""An account's image-generation settings (`IntegrationSettings`): validation, defaults, and the
API key, which is encrypted at rest and only ever decrypted in memory for a provider call."""

from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlparse

from config import load_config
from jobs.errors import ValidationError
from jobs.limits import Limits
from jobs.providers import PROVIDERS
from jobs.providers.base import Credentials
from models import IntegrationSettings, utcnow
from secret_box import SecretBox

INTEGRATION = "image_generation"
IMAGE_TYPES = ("realistic", "artistic", "cartoon")
FORMATS = ("webp", "jpg", "png")
ORIENTATIONS = ("square", "landscape", "portrait")

DEFAULTS = {
    "provider": "placeholder",
    "model": "placeholder-v1",
    "base_url": "",
    "image_type": "realistic",
    "max_in_article_images": 3,
    "in_article_orientation": "square",
    "image_format": "webp",
    "desktop_enabled": False,
    "mobile_enabled": False,
    # Per provider key: parallel calls (1 keeps the plan's one-at-a-time rule; None = auto, adapting
    # to the provider's answers) and calls per minute (None = no limit known).
    "max_concurrent_calls": 1,
    "calls_per_minute": None,
}


@lru_cache(maxsize=4)
def _box(keys: tuple) -> SecretBox:
    return SecretBox(keys)


def secret_box() -> SecretBox:
    return _box(load_config().encryption_keys)


@dataclass(frozen=True)
class ImageSettings:
    provider: str
    model: str
    image_type: str
    image_format: str
    max_in_article_images: int
    in_article_orientation: str
    desktop_enabled: bool
    mobile_enabled: bool
    limits: Limits
    credentials: Credentials


def settings_row(account_id) -> IntegrationSettings | None:
    return IntegrationSettings.get_or_none(
        (IntegrationSettings.account == account_id) & (IntegrationSettings.integration_type == INTEGRATION)
    )


def public_view(row: IntegrationSettings | None) -> dict:
    """The settings as the API and the page show them: never the key, only whether it is set."""
    config = {**DEFAULTS, **(row.config if row else {})}
    return {
        **{k: config[k] for k in DEFAULTS},
        "is_active": bool(row and row.is_active),
        "api_key_set": bool(row and row.api_key_encrypted),
        "api_key_last4": (row.api_key_last4 if row and row.api_key_encrypted else None),
    }


def load(account_id) -> ImageSettings:
    """The active settings ready for a provider call; ValidationError says what to fix."""
    row = settings_row(account_id)
    if row is None or not row.is_active:
        raise ValidationError("No active image-generation settings: open Settings → Image generation, "
                              "choose a provider and save.")
    config = {**DEFAULTS, **row.config}
    provider = PROVIDERS.get(config["provider"])
    if provider is None:
        raise ValidationError(f"Image provider {config['provider']!r} is not supported; choose one of: "
                              + ", ".join(PROVIDERS) + ".")
    if config["model"] not in provider.models:
        raise ValidationError(f"Model {config['model']!r} is not available for {provider.label}; choose one "
                              "of: " + ", ".join(provider.models) + ".")
    api_key = secret_box().decrypt(row.api_key_encrypted) if row.api_key_encrypted else None
    if provider.requires_api_key and not api_key:
        raise ValidationError(f"{provider.label} needs an API key: add it in Settings → Image generation.")
    return ImageSettings(
        provider=config["provider"], model=config["model"], image_type=config["image_type"],
        image_format=config["image_format"], max_in_article_images=int(config["max_in_article_images"]),
        in_article_orientation=config["in_article_orientation"],
        desktop_enabled=bool(config["desktop_enabled"]), mobile_enabled=bool(config["mobile_enabled"]),
        limits=Limits(key=f"{account_id}:{config['provider']}", max_concurrent=config["max_concurrent_calls"],
                      per_minute=config["calls_per_minute"]),
        credentials=Credentials(api_key=api_key, base_url=config["base_url"] or None),
    )


def _choice(data, errors, name, choices):
    value = data[name]
    if value not in choices:
        errors[name] = f"Choose one of: {', '.join(choices)}."
    return value


def _int(data, errors, name, low, high):
    value = data[name]
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).strip().isdigit() \
            or not low <= int(value) <= high:
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


def validate(data: dict, current: dict) -> tuple[dict, dict]:
    """Merge `data` over `current` and check every field; return (config, errors by field)."""
    if not isinstance(data, dict):
        raise ValidationError("Send the settings as a JSON object.")
    merged = {**DEFAULTS, **current, **{k: v for k, v in data.items() if k in DEFAULTS}}
    errors: dict = {}
    provider = PROVIDERS.get(merged["provider"])
    if provider is None:
        errors["provider"] = "Choose one of: " + ", ".join(PROVIDERS) + "."
    elif merged["model"] not in provider.models:
        if "model" not in data and data.get("provider"):
            merged["model"] = next(iter(provider.models))  # switching provider picks its first model
        else:
            errors["model"] = f"Not a {provider.label} model; choose one of: " + ", ".join(provider.models) + "."
    _choice(merged, errors, "image_type", IMAGE_TYPES)
    _choice(merged, errors, "image_format", FORMATS)
    _choice(merged, errors, "in_article_orientation", ORIENTATIONS)
    merged["max_in_article_images"] = _int(merged, errors, "max_in_article_images", 1, 5)
    merged["max_concurrent_calls"] = _optional_int(merged, errors, "max_concurrent_calls", 1, 16)
    merged["calls_per_minute"] = _optional_int(merged, errors, "calls_per_minute", 1, 100_000)
    merged["desktop_enabled"] = _flag(merged, errors, "desktop_enabled")
    merged["mobile_enabled"] = _flag(merged, errors, "mobile_enabled")
    base_url = (merged["base_url"] or "").strip()
    if base_url:
        parsed = urlparse(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc or parsed.username or parsed.password:
            errors["base_url"] = "An http(s) URL such as https://api.openai.com/v1, without a password."
    merged["base_url"] = base_url.rstrip("/")
    return merged, errors


def save(account_id, data: dict) -> tuple[dict, dict]:
    """Validate and store; the key is write-only (blank keeps the old one). Return (view, errors)."""
    row = settings_row(account_id)
    config, errors = validate(data, row.config if row else {})
    api_key = data.get("api_key")
    if api_key is not None and not isinstance(api_key, str):
        errors["api_key"] = "A text value."
    is_active = data.get("is_active", row.is_active if row else True)
    if not isinstance(is_active, bool):
        is_active = str(is_active).lower() in {"true", "on", "1"}
    if errors:
        return public_view(row), errors
    if row is None:
        row = IntegrationSettings(account=account_id, integration_type=INTEGRATION)
    row.config = config
    row.is_active = is_active
    if api_key and api_key.strip():
        row.api_key_encrypted = secret_box().encrypt(api_key.strip())
        row.api_key_last4 = api_key.strip()[-4:]
    row.updated_at = utcnow()
    row.save()
    return public_view(row), {}


def rotate_keys() -> int:
    """Re-encrypt every stored key under the newest ENCRYPTION_KEYS entry; return how many."""
    box = secret_box()
    count = 0
    for row in IntegrationSettings.select().where(IntegrationSettings.api_key_encrypted.is_null(False)):
        row.api_key_encrypted = box.rotate(row.api_key_encrypted)
        row.save()
        count += 1
    return count
