"""The provider seam: one class per image provider, behind this small contract.

A provider receives everything it needs (the key included) in each call and never looks anything
up itself. Capabilities — models, size rules, qualities, formats, prices, lifecycle — are data in the
model catalog (`models.toml`), so callers never branch on the provider's name.
"""

import base64
import binascii
from abc import ABC, abstractmethod
from dataclasses import dataclass
from decimal import Decimal

from jobs.providers.catalog import ModelSpec


@dataclass(frozen=True)
class ImageRequest:
    prompt: str
    model: str
    width: int
    height: int
    output_format: str = "png"  # the account's format: webp | jpg | png
    output_compression: int | None = None  # 0-100 for jpg/webp, as the account's stored copies use
    negative_prompt: str | None = None
    quality: str | None = None  # one of the model's qualities; None: the model's default
    background: str | None = None
    end_user: str | None = None  # a stable, non-identifying id of the account (abuse tracking)
    price_per_image: Decimal | None = None  # set by the account for servers we have no prices for


@dataclass(frozen=True)
class Credentials:
    api_key: str | None
    base_url: str | None = None  # None: the provider's default

    def __repr__(self):  # keys never reach logs or tracebacks through repr()
        return f"Credentials(api_key={'set' if self.api_key else None}, base_url={self.base_url!r})"


@dataclass
class ProviderImage:
    """One generated image as the provider gave it: bytes (base64 answers) or a URL to fetch."""

    data: bytes | None = None
    url: str | None = None
    cost: Decimal | None = None
    request_id: str | None = None  # the provider's id of the call (x-request-id): support asks for it
    # Hosts the image may be downloaded from (the provider's own CDN, or the base_url host:port).
    download_hosts: tuple = ()


class ProviderError(Exception):
    """A provider call that failed. The message is shown to staff, so it says which provider said what
    ("OpenAI rejected the prompt under its content policy: …") and never contains the key.

    permanent: retrying the same request cannot help (auth, quota, policy, validation).
    retry_after: seconds the provider asked us to wait (429/503), if it said.
    """

    def __init__(self, message: str, *, permanent: bool, retry_after: float | None = None,
                 status: int | None = None, code: str | None = None, request_id: str | None = None,
                 maybe_charged: bool = False, blocks_key: bool = False):
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.retry_after = retry_after
        self.status = status
        self.code = code
        self.request_id = request_id
        # The request reached the provider and may have been completed (and billed) after we gave up.
        self.maybe_charged = maybe_charged
        # Every call on this key will fail the same way (no credit left) until a person acts.
        self.blocks_key = blocks_key


class ImageProvider(ABC):
    """Base class of the providers; subclasses fill the class attributes and `generate`."""

    name: str = ""
    label: str = ""
    default_base_url: str | None = None
    requires_api_key: bool = True
    models: dict = {}  # name → ModelSpec, from the catalog
    # Whether the account may name a model the catalog does not list (Runware's AIR ids, a
    # self-hosted server's own names).
    custom_models: bool = False

    def custom_model(self, model: str) -> ModelSpec | None:
        """The spec of a model the account typed in, or None when this provider takes no such name."""
        return None

    def model_spec(self, model: str) -> ModelSpec:
        spec = self.models.get(model) or (self.custom_model(model) if self.custom_models else None)
        if spec is None:
            raise ProviderError(
                f"{self.label} has no model {model!r}; choose one of: {', '.join(self.offered_models())}.",
                permanent=True, code="invalid_model",
            )
        return spec

    def offered_models(self) -> list[str]:
        """The catalog's models a new setting may choose: not the retired ones."""
        return [name for name, spec in self.models.items() if spec.state != "retired"]

    def check_request(self, request: ImageRequest, credentials: Credentials | None = None) -> ModelSpec:
        """Refuse, before any network call, what the provider would refuse anyway; returns the model's spec."""
        spec = self.model_spec(request.model)
        problem = spec.size_rule.problem(request.width, request.height)
        if problem:
            raise ProviderError(f"{self.label} {spec.label} cannot make this size: {problem}", permanent=True,
                                code="invalid_size")
        if spec.qualities and request.quality and request.quality not in spec.qualities:
            raise ProviderError(f"{self.label} {spec.label} quality must be one of {', '.join(spec.qualities)}; "
                                f"got {request.quality!r}.", permanent=True, code="invalid_quality")
        if not request.prompt.strip():
            raise ProviderError(f"{self.label}: the prompt is empty.", permanent=True, code="invalid_prompt")
        if len(request.prompt) > spec.max_prompt_chars:
            raise ProviderError(f"{self.label} {spec.label} takes prompts of at most {spec.max_prompt_chars} "
                                f"characters; this one has {len(request.prompt)}.", permanent=True,
                                code="prompt_too_long")
        if self.requires_api_key and not (credentials and credentials.api_key):
            raise ProviderError(f"{self.label} needs an API key: add one in the account's provider settings.",
                                permanent=True, code="missing_api_key")
        return spec

    def decode_base64(self, text, status: int | None = None) -> bytes:
        """Image bytes from a base64 answer; strict, so a corrupted answer fails here, by name."""
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise ProviderError(f"{self.label} returned an image that is not valid base64", permanent=True,
                                status=status, code="invalid_base64") from None

    def answered_image(self, *, b64: str | None, url: str | None, base_url: str, status: int,
                       **fields) -> ProviderImage:
        """The image an answer carries: decoded bytes, or a URL with the hosts it may come from."""
        image = ProviderImage(**fields)
        if b64:
            try:
                image.data = self.decode_base64(b64, status)
            except ProviderError as exc:
                exc.request_id = image.request_id  # the call was answered (and billed): keep its id
                raise
        if url:
            image.url = url
            image.download_hosts = self.download_hosts(url, base_url)
        return image

    def download_hosts(self, url: str, base_url: str) -> tuple:
        """Hosts an image URL in an answer may be fetched from; providers name their own CDN."""
        return ()

    def estimate_cost(self, request: ImageRequest) -> Decimal | None:
        """The price of one image before the call (and when the answer gives none): the account's own
        price where it set one, else the catalog's estimate for the model, size and quality."""
        if request.price_per_image is not None:
            return request.price_per_image
        spec = self.model_spec(request.model)
        return spec.estimate(request.width, request.height, request.quality or spec.default_quality)

    @abstractmethod
    def generate(self, request: ImageRequest, credentials: Credentials, *, timeout: tuple[float, float]
                 ) -> ProviderImage:
        """Make ONE attempt; raise ProviderError on any failure. Retries are the caller's job."""
