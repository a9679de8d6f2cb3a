"""The provider seam: one class per image provider, behind this small contract.

A provider receives everything it needs (the key included) in each call and never looks anything
up itself. Capabilities — models, sizes per orientation, negative-prompt support, prices — are data
on the class, so callers never branch on the provider's name.
"""

import base64
import binascii
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from decimal import Decimal

ORIENTATIONS = ("square", "landscape", "portrait")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    label: str
    # orientation → (width, height), each valid for this model
    sizes: dict
    max_prompt_chars: int = 4000
    supports_negative_prompt: bool = False


@dataclass(frozen=True)
class ImageRequest:
    prompt: str
    model: str
    width: int
    height: int
    output_format: str = "png"  # the account's format: webp | jpg | png
    negative_prompt: str | None = None
    options: dict = field(default_factory=dict)  # provider-specific: quality, style, steps…


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
    revised_prompt: str | None = None
    cost: Decimal | None = None
    # Hosts the image may be downloaded from (the provider's own CDN, or the base_url host:port).
    download_hosts: tuple = ()


class ProviderError(Exception):
    """A provider call that failed. The message is shown to staff, so it says which provider said what
    ("OpenAI rejected the prompt under its content policy: …") and never contains the key.

    permanent: retrying the same request cannot help (auth, quota, policy, validation).
    retry_after: seconds the provider asked us to wait (429/503), if it said.
    """

    def __init__(self, message: str, *, permanent: bool, retry_after: float | None = None,
                 status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.retry_after = retry_after
        self.status = status
        self.code = code


class ImageProvider(ABC):
    """Base class of the providers; subclasses fill the class attributes and `generate`."""

    name: str = ""
    label: str = ""
    default_base_url: str | None = None
    requires_api_key: bool = True
    models: dict = {}  # name → ModelSpec

    def model_spec(self, model: str) -> ModelSpec:
        try:
            return self.models[model]
        except KeyError:
            raise ProviderError(
                f"{self.label} has no model {model!r}; choose one of: {', '.join(self.models)}.",
                permanent=True, code="invalid_model",
            ) from None

    def size_for(self, model: str, orientation: str) -> tuple[int, int]:
        return self.model_spec(model).sizes[orientation]

    def check_request(self, request: ImageRequest, credentials: Credentials | None = None) -> ModelSpec:
        """Refuse, before any network call, what the provider would refuse anyway; returns the model's spec."""
        spec = self.model_spec(request.model)
        if (request.width, request.height) not in spec.sizes.values():
            allowed = ", ".join(f"{w}x{h}" for w, h in spec.sizes.values())
            raise ProviderError(f"{self.label} {spec.label} cannot make {request.width}x{request.height} images; "
                                f"allowed: {allowed}.", permanent=True, code="invalid_size")
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
            image.data = self.decode_base64(b64, status)
        if url:
            image.url = url
            image.download_hosts = self.download_hosts(url, base_url)
        return image

    def download_hosts(self, url: str, base_url: str) -> tuple:
        """Hosts an image URL in an answer may be fetched from; providers name their own CDN."""
        return ()

    def estimate_cost(self, request: ImageRequest) -> Decimal | None:
        """The price of one image from the provider's price table, when the answer gives none."""
        return None

    @abstractmethod
    def generate(self, request: ImageRequest, credentials: Credentials, *, timeout: tuple[float, float]
                 ) -> ProviderImage:
        """Make ONE attempt; raise ProviderError on any failure. Retries are the caller's job."""
