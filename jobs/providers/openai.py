"""OpenAI Images: the GPT image models through `POST {base_url}/images/generations`.

Which models exist, their sizes, qualities and prices are in the catalog (models.toml); this module
speaks the wire format: the request body, the answer (always base64, with token `usage`) and the
error table.
"""

import re
from urllib.parse import urlsplit

from jobs.providers import catalog
from jobs.providers.base import Credentials, ImageProvider, ImageRequest, ProviderError, ProviderImage
from jobs.providers.http import (
    MAX_ANSWER_BYTES,
    Answer,
    error_text,
    host_key,
    post_json,
    redact,
    retry_after_seconds,
)

# The account's format → the API's `output_format`.
WIRE_FORMATS = {"png": "png", "jpg": "jpeg", "webp": "webp"}
SETTINGS_HINT = "Settings → Image generation"


class OpenAIProvider(ImageProvider):
    name = "openai"
    label = "OpenAI"
    default_base_url = "https://api.openai.com/v1"
    max_answer_bytes = MAX_ANSWER_BYTES
    models = catalog.models_for("openai")

    def request_body(self, request: ImageRequest) -> dict:
        """The JSON body. No `response_format`: the GPT image models always answer base64 and refuse
        the field. The image comes in the account's own format, so nothing is converted afterwards."""
        spec = self.model_spec(request.model)
        body = {"model": request.model, "prompt": request.prompt, "n": 1,
                "size": f"{request.width}x{request.height}", "moderation": "auto"}
        quality = request.quality or spec.default_quality
        if quality:
            body["quality"] = quality
        if spec.backgrounds:
            body["background"] = request.background or "opaque"
        wire_format = WIRE_FORMATS.get(request.output_format)
        if wire_format and request.output_format in spec.output_formats:
            body["output_format"] = wire_format
            if wire_format in ("jpeg", "webp") and request.output_compression is not None:
                body["output_compression"] = request.output_compression
        if request.end_user:
            body["user"] = request.end_user
        return body

    def generate(self, request: ImageRequest, credentials: Credentials, *, timeout: tuple[float, float]
                 ) -> ProviderImage:
        self.check_request(request, credentials)
        body = self.request_body(request)
        base_url = (credentials.base_url or self.default_base_url).rstrip("/")
        # A self-hosted server may run without a key; OpenAI itself is checked to have one.
        headers = {"Authorization": f"Bearer {credentials.api_key}"} if credentials.api_key else {}
        answer = post_json(f"{base_url}/images/generations", body, headers=headers,
                           timeout=timeout, label=self.label, max_bytes=self.max_answer_bytes)
        if not 200 <= answer.status < 300:
            raise self.error_for(answer, credentials.api_key, request.model)
        return self.parse(answer, request, base_url)

    def parse(self, answer: Answer, request: ImageRequest, base_url: str) -> ProviderImage:
        payload = answer.json()
        items = payload.get("data") if isinstance(payload, dict) else None
        item = items[0] if isinstance(items, list) and items and isinstance(items[0], dict) else {}
        request_id = answer.headers.get("x-request-id")
        if not item.get("b64_json") and not item.get("url"):
            raise ProviderError(f"{self.label} answered without an image", permanent=True, status=answer.status,
                                code="no_image", request_id=request_id)
        usage = payload.get("usage")
        return self.answered_image(b64=item.get("b64_json"), url=item.get("url"), base_url=base_url,
                                   status=answer.status, request_id=request_id,
                                   cost=self.model_spec(request.model).cost_from_usage(usage))

    @staticmethod
    def download_hosts(url: str, base_url: str) -> tuple:
        """Only OpenAI's own image CDN (by name, default port), or the server we asked (by host:port)."""
        hosts = [host_key(base_url)]
        parts = urlsplit(url)
        hostname = (parts.hostname or "").lower()
        if parts.scheme == "https" and hostname.endswith(".blob.core.windows.net") and "oaidalle" in hostname:
            hosts.insert(0, hostname)
        return tuple(hosts)

    def error_for(self, answer: Answer, api_key: str | None, model: str = "") -> ProviderError:
        """Map an error answer by OpenAI's error table; the body may be OpenAI's JSON or a proxy's
        plain text. Each sentence says what happened and what a person can do about it."""
        status = answer.status
        payload = answer.json()
        error = payload.get("error") if isinstance(payload, dict) else None
        error = error if isinstance(error, dict) else {}
        code, kind = error.get("code"), error.get("type")
        message = redact(error_text(answer, error.get("message"), self.label), api_key)
        label = self.label

        def fail(text, *, permanent, retry_after=None, blocks_key=False):
            return ProviderError(text, permanent=permanent, status=status, code=str(code or kind or status),
                                 retry_after=retry_after, request_id=answer.headers.get("x-request-id"),
                                 blocks_key=blocks_key)

        if status == 401:
            return fail(f"{label} rejected the API key (invalid_api_key): check the key in {SETTINGS_HINT}.",
                        permanent=True)
        if code == "model_not_found":
            return fail(f"{label} says the model {model or 'chosen'} does not exist any more or this key cannot use "
                        f"it (model_not_found). Choose another model in {SETTINGS_HINT} → Model.", permanent=True)
        if status == 403:
            return fail(f"{label} refused this API key access (permission_denied): {message} Check the key's "
                        f"permissions and the organization's verification, or use another key in {SETTINGS_HINT}.",
                        permanent=True)
        if "insufficient_quota" in (code, kind):
            return fail(f"{label}: the account behind this API key has no credit left (insufficient_quota). "
                        "Add credit in OpenAI's billing settings, then retry.", permanent=True, blocks_key=True)
        if code == "billing_hard_limit_reached":
            return fail(f"{label}: the billing hard limit of the account behind this API key has been reached "
                        "(billing_hard_limit_reached). Add credit or raise the limit in OpenAI's billing settings, "
                        "then retry.", permanent=True, blocks_key=True)
        if code == "moderation_blocked" or kind == "image_generation_user_error":
            categories = _safety_violations(message)
            which = f" ({', '.join(categories)})" if categories else ""
            return fail(f"{label}'s safety system refused this image{which}. Edit the prompt and generate it "
                        "again.", permanent=True)
        if status == 429:
            return fail(f"{label} rate limit: {message}", permanent=False,
                        retry_after=retry_after_seconds(answer.headers))
        if status in (408, 409) or status >= 500:
            return fail(f"{label} could not make the image now (HTTP {status}): {message}", permanent=False,
                        retry_after=retry_after_seconds(answer.headers))
        if 300 <= status < 400:
            return fail(f"{label} answered with a redirect (HTTP {status}); check the base URL", permanent=True)
        if status == 400:
            return fail(f"{label} rejected the request ({code or kind or 'invalid_request'}): {message}",
                        permanent=True)
        return fail(f"{label} rejected the request (HTTP {status}): {message}", permanent=True)


def _safety_violations(message: str) -> list[str]:
    """The categories in OpenAI's "safety_violations=[sexual, violence]"."""
    found = re.search(r"safety_violations=\[([^\]]*)\]", message)
    return [c.strip(" '\"") for c in found.group(1).split(",") if c.strip(" '\"")] if found else []
