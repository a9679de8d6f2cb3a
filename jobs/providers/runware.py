"""Runware: FLUX and HiDream models through its REST task API (`POST {base_url}` with a task array)."""

import re
import uuid
from decimal import Decimal, InvalidOperation
from urllib.parse import urlsplit

from jobs.providers import catalog
from jobs.providers.base import Credentials, ImageProvider, ImageRequest, ProviderError, ProviderImage
from jobs.providers.catalog import ModelSpec
from jobs.providers.http import (
    MAX_ANSWER_BYTES,
    Answer,
    error_text,
    host_key,
    post_json,
    redact,
    retry_after_seconds,
)

OUTPUT_FORMATS = {"webp": "WEBP", "jpg": "JPG", "png": "PNG"}
CDN_HOST = "im.runware.ai"
# An AIR id: "runware:100@1", "civitai:4384@128713".
AIR_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,40}:[0-9]{1,12}@[0-9]{1,12}")
# Runware's codes are still being standardized; these name a refusal by its safety checks.
SAFETY_CODES = {"contentPolicyViolation", "nsfwContentDetected", "promptBlocked", "safetyCheckFailed"}
BALANCE_WORDS = ("credit", "balance", "quota")


class RunwareProvider(ImageProvider):
    name = "runware"
    label = "Runware"
    default_base_url = "https://api.runware.ai/v1"
    max_answer_bytes = MAX_ANSWER_BYTES
    models = catalog.models_for("runware")
    custom_models = True  # an account may type any other AIR id Runware serves

    def custom_model(self, model: str) -> ModelSpec | None:
        return catalog.custom_model(self.name, model) if AIR_ID.fullmatch(model or "") else None

    def tasks(self, request: ImageRequest, api_key: str, task_uuid: str) -> list:
        """The task array: authentication first, then the one image inference."""
        self.model_spec(request.model)
        task = {"taskType": "imageInference", "taskUUID": task_uuid, "positivePrompt": request.prompt,
                "model": request.model, "width": request.width, "height": request.height, "numberResults": 1,
                "outputType": "URL", "outputFormat": OUTPUT_FORMATS.get(request.output_format, "PNG"),
                "includeCost": True, "safety": {"checkContent": True}}
        if request.output_compression is not None and request.output_format in ("jpg", "webp"):
            task["outputQuality"] = min(99, max(20, request.output_compression))
        if request.negative_prompt and request.negative_prompt.strip():
            task["negativePrompt"] = request.negative_prompt
        return [{"taskType": "authentication", "apiKey": api_key}, task]

    def generate(self, request: ImageRequest, credentials: Credentials, *, timeout: tuple[float, float]
                 ) -> ProviderImage:
        self.check_request(request, credentials)
        task_uuid = str(uuid.uuid4())
        tasks = self.tasks(request, credentials.api_key, task_uuid)
        base_url = (credentials.base_url or self.default_base_url).rstrip("/")
        answer = post_json(base_url, tasks, headers={"Authorization": f"Bearer {credentials.api_key}"},
                           timeout=timeout, label=self.label, max_bytes=self.max_answer_bytes)
        if not 200 <= answer.status < 300:
            raise self.error_for(answer, credentials.api_key, task_uuid)
        return self.parse(answer, task_uuid, base_url, credentials.api_key)

    def parse(self, answer: Answer, task_uuid: str, base_url: str, api_key: str | None = None) -> ProviderImage:
        payload = answer.json()
        items = payload.get("data") if isinstance(payload, dict) else None
        item = next((i for i in items or () if isinstance(i, dict) and i.get("taskUUID") == task_uuid), {})
        if not item.get("imageURL") and not item.get("imageBase64Data"):
            if isinstance(payload, dict) and payload.get("errors"):
                raise self.error_for(answer, api_key, task_uuid)  # errors scoped to our task, on a 200
            raise ProviderError("Runware answered without an image", permanent=True, status=answer.status,
                                code="no_image", request_id=task_uuid)
        # Our taskUUID is what Runware's support asks for: it is this call's request id.
        return self.answered_image(b64=item.get("imageBase64Data"), url=item.get("imageURL"), base_url=base_url,
                                   status=answer.status, cost=self._cost(item.get("cost")), request_id=task_uuid)

    @staticmethod
    def download_hosts(url: str, base_url: str) -> tuple:
        """Only Runware's image CDN (by name, default port), or the server we asked (by host:port)."""
        hosts = [host_key(base_url)]
        parts = urlsplit(url)
        if parts.scheme == "https" and (parts.hostname or "").lower() == CDN_HOST:
            hosts.insert(0, CDN_HOST)
        return tuple(hosts)

    @staticmethod
    def _cost(value) -> Decimal | None:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            return None
        try:
            cost = Decimal(str(value))  # via str: 0.0013 stays 0.0013, not its binary float
        except InvalidOperation:
            return None
        return cost if cost.is_finite() and cost >= 0 else None

    def error_for(self, answer: Answer, api_key: str | None, task_uuid: str | None = None) -> ProviderError:
        """Map an error answer: known codes by name, unknown ones by the HTTP status."""
        status = answer.status
        payload = answer.json()
        errors = payload.get("errors") if isinstance(payload, dict) else None
        errors = [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []
        first = next((e for e in errors if e.get("taskUUID") == task_uuid), errors[0] if errors else {})
        code = str(first.get("code") or "")
        message = redact(error_text(answer, first.get("message"), self.label), api_key)
        named = f" ({code})" if code else ""

        def fail(text, *, permanent, retry_after=None, blocks_key=False):
            return ProviderError(text, permanent=permanent, status=status, code=code or str(status),
                                 retry_after=retry_after, request_id=task_uuid, blocks_key=blocks_key)

        if status == 401 or code in ("invalidApiKey", "missingApiKey"):
            return fail("Runware rejected the API key: check the key in Settings → Image generation.",
                        permanent=True)
        if code in SAFETY_CODES:
            return fail(f"Runware's safety check refused the prompt or the image{named}: {message} Edit the "
                        "prompt and generate it again.", permanent=True)
        if status == 402 or (status < 500 and any(w in message.lower() for w in BALANCE_WORDS)):
            return fail(f"Runware: the account behind this API key has not enough credit{named}. Add credit in "
                        "Runware's dashboard, then retry.", permanent=True, blocks_key=True)
        if status == 403:
            return fail(f"Runware refused this API key{named}: {message}", permanent=True)
        if status in (408, 429) or status >= 500:
            return fail(f"Runware could not make the image now (HTTP {status}): {message}", permanent=False,
                        retry_after=retry_after_seconds(answer.headers))
        if 300 <= status < 400:
            return fail(f"Runware answered with a redirect (HTTP {status}); check the base URL", permanent=True)
        return fail(f"Runware rejected the request{named}: {message}", permanent=True)
