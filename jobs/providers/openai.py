"""OpenAI Images: dall-e-2, dall-e-3, gpt-image-1 and gpt-image-1-mini through `POST /images/generations`."""

from decimal import Decimal
from urllib.parse import urlsplit

from jobs.providers.base import (
    ORIENTATIONS,
    Credentials,
    ImageProvider,
    ImageRequest,
    ModelSpec,
    ProviderError,
    ProviderImage,
)
from jobs.providers.http import MAX_ANSWER_BYTES, Answer, host_key, post_json, redact, retry_after_seconds

GPT_SIZES = {"square": (1024, 1024), "landscape": (1536, 1024), "portrait": (1024, 1536)}
DALLE3_SIZES = {"square": (1024, 1024), "landscape": (1792, 1024), "portrait": (1024, 1792)}
# dall-e-2 has no wide sizes; every orientation gets its largest square.
DALLE2_SIZES = dict.fromkeys(ORIENTATIONS, (1024, 1024))

QUALITIES = {"dall-e-2": (), "dall-e-3": ("standard", "hd"), "gpt-image": ("low", "medium", "high", "auto")}
DEFAULT_QUALITY = {"dall-e-3": "standard", "gpt-image": "medium"}
OUTPUT_FORMATS = {"png": "png", "jpg": "jpeg", "jpeg": "jpeg", "webp": "webp"}
# GPT image models are billed by output tokens (USD per 1M); the answer's `usage` gives the count.
TOKEN_PRICES = {"gpt-image-1": Decimal("40"), "gpt-image-1-mini": Decimal("8")}


def _prices() -> dict:
    """USD per image by (model, quality, "WxH"), from the published table."""
    table = {("dall-e-2", "standard", "1024x1024"): "0.020",
             ("dall-e-3", "standard", "1024x1024"): "0.040", ("dall-e-3", "hd", "1024x1024"): "0.080"}
    for size in ("1792x1024", "1024x1792"):
        table[("dall-e-3", "standard", size)], table[("dall-e-3", "hd", size)] = "0.080", "0.120"
    for model, rows in {"gpt-image-1": {"low": (".011", ".016"), "medium": (".042", ".063"), "high": (".167", ".25")},
                        "gpt-image-1-mini": {"low": (".005", ".006"), "medium": (".011", ".015"),
                                             "high": (".036", ".052")}}.items():
        for quality, (square, wide) in rows.items():
            table[(model, quality, "1024x1024")] = square
            table[(model, quality, "1536x1024")] = table[(model, quality, "1024x1536")] = wide
    return {key: Decimal(price) for key, price in table.items()}


PRICES = _prices()


def _family(model: str) -> str:
    return "gpt-image" if model.startswith("gpt-image") else model


class OpenAIProvider(ImageProvider):
    name = "openai"
    label = "OpenAI"
    default_base_url = "https://api.openai.com/v1"
    max_answer_bytes = MAX_ANSWER_BYTES
    models = {
        "dall-e-2": ModelSpec("dall-e-2", "DALL·E 2", DALLE2_SIZES, max_prompt_chars=1000),
        "dall-e-3": ModelSpec("dall-e-3", "DALL·E 3", DALLE3_SIZES, max_prompt_chars=4000),
        "gpt-image-1": ModelSpec("gpt-image-1", "GPT Image 1", GPT_SIZES, max_prompt_chars=32000),
        "gpt-image-1-mini": ModelSpec("gpt-image-1-mini", "GPT Image 1 mini", GPT_SIZES, max_prompt_chars=32000),
    }

    def quality(self, request: ImageRequest) -> str | None:
        family = _family(request.model)
        if not QUALITIES.get(family):
            return None
        quality = request.options.get("quality") or DEFAULT_QUALITY[family]
        if quality not in QUALITIES[family]:
            raise ProviderError(f"OpenAI {request.model} quality must be one of {', '.join(QUALITIES[family])}; "
                                f"got {quality!r}.", permanent=True, code="invalid_quality")
        return quality

    def request_body(self, request: ImageRequest) -> dict:
        """The JSON body for this model; each model refuses the fields of the others."""
        self.model_spec(request.model)
        body = {"model": request.model, "prompt": request.prompt, "n": 1, "size": f"{request.width}x{request.height}"}
        quality = self.quality(request)
        if quality:
            body["quality"] = quality
        if request.model == "dall-e-3" and request.options.get("style"):
            if request.options["style"] not in ("vivid", "natural"):
                raise ProviderError("OpenAI dall-e-3 style must be vivid or natural.", permanent=True,
                                    code="invalid_style")
            body["style"] = request.options["style"]
        if _family(request.model) == "gpt-image":
            # GPT image models always answer base64 and refuse `response_format`.
            if request.output_format not in OUTPUT_FORMATS:
                raise ProviderError(f"OpenAI cannot make {request.output_format!r} images; use png, jpg or webp.",
                                    permanent=True, code="invalid_output_format")
            body["output_format"] = OUTPUT_FORMATS[request.output_format]
        return body

    def estimate_cost(self, request: ImageRequest) -> Decimal | None:
        quality = self.quality(request) or "standard"
        if quality == "auto":  # auto may pick high: estimate the upper end
            quality = "high"
        return PRICES.get((request.model, quality, f"{request.width}x{request.height}"))

    def generate(self, request: ImageRequest, credentials: Credentials, *, timeout: tuple[float, float]
                 ) -> ProviderImage:
        self.check_request(request, credentials)
        body = self.request_body(request)
        base_url = (credentials.base_url or self.default_base_url).rstrip("/")
        answer = post_json(f"{base_url}/images/generations", body,
                           headers={"Authorization": f"Bearer {credentials.api_key}"},
                           timeout=timeout, label=self.label, max_bytes=self.max_answer_bytes)
        if not 200 <= answer.status < 300:
            raise self.error_for(answer, credentials.api_key)
        return self.parse(answer, request, base_url)

    def parse(self, answer: Answer, request: ImageRequest, base_url: str) -> ProviderImage:
        payload = answer.json()
        items = payload.get("data") if isinstance(payload, dict) else None
        item = items[0] if isinstance(items, list) and items and isinstance(items[0], dict) else {}
        if not item.get("b64_json") and not item.get("url"):
            raise ProviderError("OpenAI answered without an image", permanent=True, status=answer.status,
                                code="no_image")
        return self.answered_image(b64=item.get("b64_json"), url=item.get("url"), base_url=base_url,
                                   status=answer.status, revised_prompt=item.get("revised_prompt"),
                                   cost=self._cost(request, payload))

    @staticmethod
    def download_hosts(url: str, base_url: str) -> tuple:
        """Only OpenAI's own image CDN (by name, default port), or the server we asked (by host:port)."""
        hosts = [host_key(base_url)]
        parts = urlsplit(url)
        hostname = (parts.hostname or "").lower()
        if parts.scheme == "https" and hostname.endswith(".blob.core.windows.net") and "oaidalle" in hostname:
            hosts.insert(0, hostname)
        return tuple(hosts)

    def _cost(self, request: ImageRequest, payload: dict) -> Decimal | None:
        usage = payload.get("usage")
        tokens = usage.get("output_tokens") if isinstance(usage, dict) else None
        if request.model in TOKEN_PRICES and isinstance(tokens, int) and tokens >= 0:
            return Decimal(tokens) * TOKEN_PRICES[request.model] / 1_000_000
        return self.estimate_cost(request)

    def error_for(self, answer: Answer, api_key: str | None) -> ProviderError:
        """Map an error answer; the body may be OpenAI's JSON or a proxy's plain text."""
        status = answer.status
        payload = answer.json()
        error = payload.get("error") if isinstance(payload, dict) else None
        error = error if isinstance(error, dict) else {}
        code, kind = error.get("code"), error.get("type")
        message = redact(str(error.get("message") or answer.snippet() or f"HTTP {status}"), api_key)

        def fail(text, *, permanent, retry_after=None):
            return ProviderError(text, permanent=permanent, status=status, code=str(code or kind or status),
                                 retry_after=retry_after)

        if status == 401:
            return fail("OpenAI: invalid API key", permanent=True)
        if status == 429 and "insufficient_quota" in (code, kind):
            return fail("OpenAI: quota exhausted (insufficient_quota) — add credit to the account", permanent=True)
        if status == 429:
            return fail(f"OpenAI rate limit: {message}", permanent=False,
                        retry_after=retry_after_seconds(answer.headers))
        if status == 400 and code == "content_policy_violation":
            return fail(f"OpenAI rejected the prompt under its content policy: {message}", permanent=True)
        if status == 400 and (code == "moderation_blocked" or kind == "image_generation_user_error"):
            return fail(f"OpenAI's moderation blocked the image: {message}", permanent=True)
        if status == 400:
            return fail(f"OpenAI rejected the request: {message}", permanent=True)
        if status in (408, 409) or status >= 500:
            return fail(f"OpenAI could not make the image now (HTTP {status}): {message}", permanent=False,
                        retry_after=retry_after_seconds(answer.headers))
        if 300 <= status < 400:
            return fail(f"OpenAI answered with a redirect (HTTP {status}); check the base URL", permanent=True)
        return fail(f"OpenAI rejected the request (HTTP {status}): {message}", permanent=True)
