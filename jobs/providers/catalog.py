"""The model catalog: each provider's models, their size rules, qualities, formats, prices and
lifecycle, read from `models.toml` beside this module. Models come and go with the outside world, so
they are data; this module only knows how to read and apply them."""

import datetime as dt
import functools
import tomllib
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path

CATALOG_FILE = Path(__file__).with_name("models.toml")

# Aspect-ratio presets offered for every placement; any other size is "custom".
PRESETS = {"1:1": (1, 1), "3:2": (3, 2), "2:3": (2, 3), "16:9": (16, 9), "9:16": (9, 16), "1.91:1": (1.91, 1)}
PLACEMENT_PRESETS = {"featured": "16:9", "in_article": "3:2", "desktop": "16:9", "mobile": "9:16"}
STATES = ("active", "deprecated", "retired")


@dataclass(frozen=True)
class SizeRule:
    name: str
    label: str
    multiple: int
    min_side: int
    max_side: int
    preset_long_side: int
    square_side: int
    max_pixels: int | None = None
    max_ratio: float | None = None

    def describe(self) -> str:
        parts = [f"width and height multiples of {self.multiple} from {self.min_side} to {self.max_side}"]
        if self.max_pixels:
            parts.append(f"at most {self.max_pixels / 1_000_000:.1f} MP")
        if self.max_ratio:
            parts.append(f"an aspect ratio between 1:{self.max_ratio:g} and {self.max_ratio:g}:1")
        return ", ".join(parts)

    def problem(self, width: int, height: int) -> str | None:
        """Why WIDTHxHEIGHT breaks this rule (a sentence naming the rule), or None when it fits."""
        size = f"{width}x{height}"
        if width % self.multiple or height % self.multiple:
            return f"{size}: width and height must be multiples of {self.multiple} ({self.label})."
        if not (self.min_side <= width <= self.max_side and self.min_side <= height <= self.max_side):
            return f"{size}: each side must be from {self.min_side} to {self.max_side} pixels ({self.label})."
        if self.max_pixels and width * height > self.max_pixels:
            return (f"{size}: at most {self.max_pixels:,} pixels ({self.max_pixels / 1_000_000:.1f} MP) "
                    f"per image ({self.label}).")
        if self.max_ratio and max(width, height) / min(width, height) > self.max_ratio:
            ratio = f"1:{self.max_ratio:g} and {self.max_ratio:g}:1"
            return f"{size}: the aspect ratio must be between {ratio} ({self.label})."
        return None

    def preset(self, name: str) -> tuple[int, int]:
        """A preset's size under this rule: the long side fixed, the short one rounded to the multiple."""
        across, down = PRESETS[name]
        if across == down:
            return self.square_side, self.square_side
        long_side = self.preset_long_side
        short = max(self.min_side, round(long_side * min(across, down) / max(across, down) / self.multiple)
                    * self.multiple)
        return (long_side, short) if across > down else (short, long_side)

    def presets(self) -> dict[str, str]:
        return {name: "{}x{}".format(*self.preset(name)) for name in PRESETS}


@dataclass(frozen=True)
class ModelStatus:
    state: str
    shutdown_date: dt.date | None = None
    replacement: str | None = None

    def as_dict(self) -> dict:
        return {"state": self.state, "replacement": self.replacement,
                "shutdown_date": self.shutdown_date.isoformat() if self.shutdown_date else None}

    def retired_sentence(self, label: str, model: str) -> str:
        when = f" on {self.shutdown_date.isoformat()}" if self.shutdown_date else ""
        instead = f"; choose {self.replacement} instead" if self.replacement else "; choose another model"
        return (f"{label} shut down the model {model}{when}, so it can no longer make images{instead} "
                "in Settings → Image generation.")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    label: str
    size_rule: SizeRule
    max_prompt_chars: int = 4000
    supports_negative_prompt: bool = False
    qualities: tuple = ()
    default_quality: str | None = None
    backgrounds: tuple = ()
    output_formats: tuple = ("png",)
    token_prices: dict = field(default_factory=dict)  # text_input, image_input, image_output: USD per 1M
    estimates: dict = field(default_factory=dict)  # quality → (square, wide) USD per image
    price_per_image: Decimal | None = None
    read_timeout: float = 120.0
    state: str = "active"
    shutdown_date: dt.date | None = None
    replacement: str | None = None
    custom: bool = False  # a name the account typed in, not a catalog entry

    def status(self, today: dt.date, announced: dt.date | None = None) -> ModelStatus:
        """The model's lifecycle today; `announced` is a shutdown date the provider's model list gave."""
        shutdown = self.shutdown_date or announced
        if self.state == "retired" or (shutdown and shutdown <= today):
            return ModelStatus("retired", shutdown, self.replacement)
        if shutdown:
            return ModelStatus("deprecated", shutdown, self.replacement)
        return ModelStatus(self.state)

    def default_size(self, placement: str) -> tuple[int, int]:
        return self.size_rule.preset(PLACEMENT_PRESETS[placement])

    def estimate(self, width: int, height: int, quality: str | None) -> Decimal | None:
        """An image's price before the call: the published per-image figure for the nearest reference
        shape, scaled by pixels. `auto` may choose high, so it is estimated as high."""
        if self.price_per_image is not None:
            return self.price_per_image
        quality = "high" if quality in (None, "auto") else quality
        figures = self.estimates.get(quality)
        if not figures:
            return None
        square, wide = (Decimal(f) for f in figures)
        reference, pixels = (square, 1024 * 1024) if width == height else (wide, 1536 * 1024)
        return (reference * Decimal(width * height) / Decimal(pixels)).quantize(Decimal("0.000001"))

    def cost_from_usage(self, usage) -> Decimal | None:
        """What an answer's `usage` costs at this model's token prices. Output tokens are all image
        tokens when the answer has no `output_tokens_details` (the Images endpoints often omit it)."""
        if not self.token_prices or not isinstance(usage, dict):
            return None
        input_tokens, output_tokens = _count(usage.get("input_tokens")), _count(usage.get("output_tokens"))
        if input_tokens is None or output_tokens is None:
            return None
        details = usage.get("input_tokens_details") if isinstance(usage.get("input_tokens_details"), dict) else {}
        image_in = _count(details.get("image_tokens")) or 0
        text_in = _count(details.get("text_tokens"))
        text_in = input_tokens - image_in if text_in is None else text_in
        out_details = usage.get("output_tokens_details")
        out_details = out_details if isinstance(out_details, dict) else {}
        image_out = _count(out_details.get("image_tokens"))
        text_out = output_tokens - image_out if image_out is not None else 0
        image_out = output_tokens if image_out is None else image_out
        prices = {name: Decimal(value) for name, value in self.token_prices.items()}
        total = (text_in * prices["text_input"] + image_in * prices["image_input"]
                 + image_out * prices["image_output"]
                 + text_out * prices.get("text_output", prices["image_output"]))
        return total / Decimal(1_000_000)


def _count(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


@functools.cache
def _catalog() -> dict:
    with CATALOG_FILE.open("rb") as file:
        return tomllib.load(file)


@functools.cache
def size_rules() -> dict[str, SizeRule]:
    return {name: SizeRule(name=name, **{k: v for k, v in rule.items()})
            for name, rule in _catalog()["size_rules"].items()}


def _spec(name: str, entry: dict, *, custom: bool = False) -> ModelSpec:
    fields = dict(entry)
    state = fields.pop("state", "active")
    if state not in STATES:
        raise ValueError(f"models.toml: {name}: state must be one of {', '.join(STATES)}")
    shutdown = fields.pop("shutdown_date", None)
    if isinstance(shutdown, str):
        shutdown = dt.date.fromisoformat(shutdown)
    price = fields.pop("price_per_image", None)
    estimates = {quality: tuple(figures) for quality, figures in fields.pop("estimates", {}).items()}
    return ModelSpec(
        name=name, label=fields.pop("label", name), size_rule=size_rules()[fields.pop("size_rule")],
        qualities=tuple(fields.pop("qualities", ())), backgrounds=tuple(fields.pop("backgrounds", ())),
        output_formats=tuple(fields.pop("output_formats", ("png",))), estimates=estimates,
        price_per_image=Decimal(price) if price is not None else None, state=state, shutdown_date=shutdown,
        custom=custom, **fields,
    )


@functools.cache
def models_for(provider: str) -> dict[str, ModelSpec]:
    """The provider's catalog entries by model id, retired ones included (old settings name them)."""
    section = _catalog().get(provider, {})
    defaults = section.get("defaults", {})
    return {name: _spec(name, {**defaults, **entry}) for name, entry in section.get("models", {}).items()}


def custom_model(provider: str, name: str, *, size_rule: str | None = None, **overrides) -> ModelSpec:
    """A model the account typed in (another Runware AIR id, a self-hosted server's model), built from
    the provider's defaults."""
    entry = {**_catalog().get(provider, {}).get("defaults", {}), "label": name}
    if size_rule:
        entry["size_rule"] = size_rule
    return replace(_spec(name, entry, custom=True), **overrides)


def parse_size(text) -> tuple[int, int] | None:
    """(width, height) from "WIDTHxHEIGHT", or None when it is not that shape."""
    if not isinstance(text, str):
        return None
    width, _, height = text.strip().lower().partition("x")
    if not (width.isascii() and width.isdigit() and height.isascii() and height.isdigit()):
        return None
    if len(width) > 5 or len(height) > 5:
        return None
    return int(width), int(height)


