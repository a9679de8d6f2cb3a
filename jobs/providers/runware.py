"""Runware: FLUX and HiDream models through its REST task API (`POST {base_url}` with a task array)."""

import uuid
from decimal import Decimal, InvalidOperation
from urllib.parse import urlsplit

from jobs.providers.base import Credentials, ImageProvider, ImageRequest, ModelSpec, ProviderError, ProviderImage
from jobs.providers.http import MAX_ANSWER_BYTES, Answer, host_key, post_json, redact, retry_after_seconds

# Multiples of 64 within 512–2048 satisfy both the old and the current documented size rules.
SIZES = {"square": (1024, 1024), "landscape": (1344, 768), "portrait": (768, 1344)}
OUTPUT_FORMATS = {"webp": "WEBP", "jpg": "JPG", "jpeg": "JPG", "png": "PNG"}
CDN_HOST = "im.runware.ai"
# Optional task fields an account may set, with their documented ranges.
OPTIONS = {"steps": (1, 100), "CFGScale": (0, 30), "outputQuality": (20, 99), "seed": (0, 2**63 - 1)}


class RunwareProvider(ImageProvider):
    name = "runware"
    label = "Runware"
    default_base_url = "https://api.runware.ai/v1"
    max_answer_bytes = MAX_ANSWER_BYTES
    models = {
        model: ModelSpec(model, label, SIZES, supports_negative_prompt=True)
        for model, label in (("runware:100@1", "FLUX.1 schnell"), ("runware:101@1", "FLUX.1 dev"),
                             ("runware:97@1", "HiDream-I1"))
    }

    def tasks(self, request: ImageRequest, api_key: str, task_uuid: str) -> list:
        """The task array: authentication first, then the one image inference."""
        self.model_spec(request.model)
        if request.output_format not in OUTPUT_FORMATS:
            raise ProviderError(f"Runware cannot make {request.output_format!r} images; use webp, jpg or png.",
                                permanent=True, code="invalid_output_format")
        task = {"taskType": "imageInference", "taskUUID": task_uuid, "positivePrompt": request.prompt,
                "model": request.model, "width": request.width, "height": request.height, "numberResults": 1,
                "outputType": "URL", "outputFormat": OUTPUT_FORMATS[request.output_format], "includeCost": True}
        if request.negative_prompt and request.negative_prompt.strip():
            task["negativePrompt"] = request.negative_prompt
        for option, (low, high) in OPTIONS.items():
            value = request.options.get(option)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
                raise ProviderError(f"Runware {option} must be a number from {low} to {high}; got {value!r}.",
                                    permanent=True, code="invalid_option")
            task[option] = value
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
            raise self.error_for(answer, credentials.api_key)
        return self.parse(answer, task_uuid, base_url, credentials.api_key)

    def parse(self, answer: Answer, task_uuid: str, base_url: str, api_key: str | None = None) -> ProviderImage:
        payload = answer.json()
        items = payload.get("data") if isinstance(payload, dict) else None
        item = next((i for i in items or () if isinstance(i, dict) and i.get("taskUUID") == task_uuid), {})
        if not item.get("imageURL") and not item.get("imageBase64Data"):
            if isinstance(payload, dict) and payload.get("errors"):
                raise self.error_for(answer, api_key)  # errors scoped to our task, on a 200
            raise ProviderError("Runware answered without an image", permanent=True, status=answer.status,
                                code="no_image")
        return self.answered_image(b64=item.get("imageBase64Data"), url=item.get("imageURL"), base_url=base_url,
                                   status=answer.status, cost=self._cost(item.get("cost")))

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

    def error_for(self, answer: Answer, api_key: str | None) -> ProviderError:
        status = answer.status
        payload = answer.json()
        errors = payload.get("errors") if isinstance(payload, dict) else None
        first = errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) else {}
        code = first.get("code")
        message = redact(str(first.get("message") or answer.snippet() or f"HTTP {status}"), api_key)

        def fail(text, *, permanent, retry_after=None):
            return ProviderError(text, permanent=permanent, status=status, code=str(code or status),
                                 retry_after=retry_after)

        if status == 401 or code == "invalidApiKey":
            return fail("Runware: invalid API key", permanent=True)
        if status == 402:
            return fail("Runware: insufficient balance", permanent=True)
        if status in (408, 429) or status >= 500:
            return fail(f"Runware could not make the image now (HTTP {status}): {message}", permanent=False,
                        retry_after=retry_after_seconds(answer.headers))
        if 300 <= status < 400:
            return fail(f"Runware answered with a redirect (HTTP {status}); check the base URL", permanent=True)
        return fail(f"Runware rejected the request: {message}", permanent=True)
