"""A fake OpenAI Images API (`POST /v1/images/generations`, `GET /v1/models`) that validates like the real one
as of 2026-12 (see /work/shared/providers.md), and a self-hosted OpenAI-compatible server built on it."""

import base64
import json
import re
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

from tests.fakes.base import FakeServer, Fault, Recorded, Reply
from tests.fakes.images import FORMATS, NOT_IMAGES, make_image, photo_sized, truncated

QUALITIES = ("low", "medium", "high", "auto")
OUTPUT_FORMATS = ("png", "jpeg", "webp")
FIELDS = {"model", "prompt", "n", "size", "user", "quality", "output_format", "output_compression", "background",
          "moderation", "stream", "partial_images"}


@dataclass(frozen=True)
class Model:
    released: str  # the model list's `created`
    qualities: tuple = QUALITIES
    formats: tuple = OUTPUT_FORMATS
    fields: frozenset = frozenset(FIELDS)


V25 = {"released": "2026-09-08", "qualities": QUALITIES + ("xhigh", "max")}
V26 = {"released": "2026-11-04", "qualities": QUALITIES + ("xhigh", "max"), "formats": OUTPUT_FORMATS + ("gif", "svg"),
       "fields": frozenset(FIELDS | {"complexity"})}
MODELS = {"gpt-image-2": Model("2026-04-21"), "gpt-image-2.5-flare": Model(**V25),
          "gpt-image-2.5-sunburst": Model(**V25), "gpt-image-2.6-flare": Model(**V26),
          "gpt-image-2.6-sunburst": Model(**V26)}
RETIRED = {"dall-e-2": "2026-05-12", "dall-e-3": "2026-05-12", "gpt-image-1": "2026-10-23",
           "gpt-image-1-mini": "2026-12-01", "gpt-image-1.5": "2026-12-01", "gpt-image-1.5-2025-12-16": "2026-12-01",
           "chatgpt-image-latest": "2026-12-01"}
# The API's default when a body names no model; it is shut down, so such a request fails as the real one would.
DEFAULT_MODEL = "dall-e-2"

# Output tokens of one 1024x1024 image by quality, scaled by pixels for other sizes: chosen so that priced at
# $30 per 1M they give OpenAI's per-image estimates for gpt-image-2 (0.006, 0.053, 0.211). `auto` counts as
# high; xhigh and max are 1.5 and 2 times high.
SQUARE_TOKENS = {"low": 200, "medium": 1767, "high": 7033, "xhigh": 10550, "max": 14066}
MIN_IMAGE_TOKENS = 32  # so that output_tokens_details never goes negative for tiny sizes
DETAIL_TEXT_TOKENS = 20  # the text share of output tokens when output_tokens_details is answered
PARTIAL_IMAGE_TOKENS = 100  # each streamed partial image is billed as extra output tokens
MAX_SIDE, MAX_PIXELS = 3840, 8_294_400


def error(status: int, message: str, *, type_="invalid_request_error", code=None, param=None) -> Reply:
    return Reply(status, {"error": {"message": message, "type": type_, "param": param, "code": code}})


def invalid(param: str, message: str) -> Reply:
    return error(400, message, code="invalid_value", param=param)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _duration(seconds: float) -> str:
    """OpenAI's way of writing the x-ratelimit-reset-* durations: 12ms, 1.5s, 6m0s."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    if seconds < 60:
        return f"{round(seconds, 3):g}s"
    return f"{int(seconds // 60)}m{round(seconds % 60)}s"


class FakeOpenAI(FakeServer):
    generation_path = "/v1/images/generations"
    load_overflow = "reject"
    sends_request_ids = True  # OpenAI's x-request-id on every answer (self-hosted servers don't)
    # Whether a shut-down model answers 404 or 400 is unconfirmed: a test sets 400 to try the other.
    model_not_found_status = 404
    requests_per_minute = 1000  # x-ratelimit-limit-requests, unless set_load(per_minute=...)

    def __init__(self, api_key: str = "sk-fake-openai-0123456789abcdefXYZ"):
        super().__init__(api_key)

    def reset(self):
        super().reset()
        with self._lock:
            self.request_ids: list[str] = []  # request_ids[i] is the x-request-id answered to calls[i]
            self.model_list_calls: list[Recorded] = []
            self.shutdown_dates: dict[str, str] = {}  # model → "YYYY-MM-DD" announced in GET /v1/models
            self.output_tokens_details = False  # the Images endpoint often leaves it out
            self.photo_sized = False  # answer images as large as real ones (~2 MB PNG), not flat colours

    # -- requests ----------------------------------------------------------------------------------
    def prompt_of(self, payload):
        return payload.get("prompt")

    def model_of(self, body: dict) -> str:
        return body.get("model", DEFAULT_MODEL)

    def answer_headers(self, call: Recorded) -> dict:
        if not self.sends_request_ids:
            return {}
        self.request_ids.append(f"req_{uuid.uuid4().hex}")  # under the lock, in step with self.calls
        return {"x-request-id": self.request_ids[-1]}

    def request_id_of(self, call: Recorded) -> str:
        with self._lock:
            return next((rid for seen, rid in zip(self.calls, self.request_ids, strict=False) if seen is call),
                        "req_unknown")

    def _auth_error(self, request: Recorded) -> Reply | None:
        given = next((v for k, v in request.headers.items() if k.lower() == "authorization"), "")
        if given == f"Bearer {self.api_key}":
            return None
        key = given.removeprefix("Bearer ")
        return error(401, f"Incorrect API key provided: {key[:3]}***{key[-4:]}. You can find your API key at "
                          "https://platform.openai.com/account/api-keys.", code="invalid_api_key")

    def check(self, call: Recorded) -> Reply | None:
        if denied := self._auth_error(call):
            return denied
        body = call.json
        if not isinstance(body, dict):
            return error(400, "We could not parse the JSON body of your request.")
        model = self.model_of(body)
        return (self._model_error(model) or self._field_error(body, model) or self._prompt_error(body)
                or self._n_error(body) or self._size_error(body.get("size", "auto"))
                or self._option_error(body, MODELS[model]))

    def model_not_found(self, model: str, status: int | None = None) -> Reply:
        message = (f"The model `{model}` has been deprecated, learn more here: "
                   "https://platform.openai.com/docs/deprecations" if model in RETIRED or model in MODELS else
                   f"The model `{model}` does not exist or you do not have access to it.")
        return error(status or self.model_not_found_status, message, code="model_not_found")

    def _model_error(self, model) -> Reply | None:
        return None if model in MODELS else self.model_not_found(model)

    def _field_error(self, body: dict, model: str) -> Reply | None:
        # `response_format` is the one old clients still send: the GPT image models always answer base64.
        unknown = next((name for name in body if name not in MODELS[model].fields), None)
        if unknown is None:
            return None
        return error(400, f"Unknown parameter: '{unknown}'.", code="unknown_parameter", param=unknown)

    @staticmethod
    def _prompt_error(body: dict) -> Reply | None:
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            return error(400, "Missing required parameter: 'prompt'.", code="missing_required_parameter",
                         param="prompt")
        if len(prompt) > 32000:
            return error(400, "Invalid 'prompt': string too long. Expected a string with maximum length 32000, "
                              f"but got a string with length {len(prompt)} instead.",
                         code="string_above_max_length", param="prompt")
        return None

    @staticmethod
    def _n_error(body: dict) -> Reply | None:
        n = body.get("n", 1)
        if _is_int(n) and 1 <= n <= 10:
            return None
        return invalid("n", f"Invalid 'n': expected an integer from 1 to 10, got {n!r}.")

    def _size_error(self, size) -> Reply | None:
        if size == "auto":
            return None
        match = re.fullmatch(r"([1-9]\d*)x([1-9]\d*)", size) if isinstance(size, str) else None
        if not match:
            return self._bad_size(size, "expected 'auto' or WIDTHxHEIGHT")
        width, height = int(match[1]), int(match[2])
        rules = [(width % 16 == 0 and height % 16 == 0, "width and height must be multiples of 16"),
                 (max(width, height) <= 3 * min(width, height), "the aspect ratio must be between 1:3 and 3:1"),
                 (max(width, height) <= MAX_SIDE, f"width and height must be at most {MAX_SIDE}"),
                 (width * height <= MAX_PIXELS, f"the image must have at most {MAX_PIXELS} pixels")]
        return next((self._bad_size(size, rule) for ok, rule in rules if not ok), None)

    @staticmethod
    def _bad_size(size, rule: str) -> Reply:
        return error(400, f"Invalid size '{size}': {rule}.", code="invalid_size", param="size")

    @staticmethod
    def _option_error(body: dict, spec: Model) -> Reply | None:
        choices = {"quality": spec.qualities, "output_format": spec.formats,
                   "background": ("transparent", "opaque", "auto"), "moderation": ("low", "auto"),
                   "complexity": ("low", "medium", "high")}  # complexity only gets here on 2.6 models
        for name, allowed in choices.items():
            if name in body and body[name] not in allowed:
                return invalid(name, f"Invalid value: '{body[name]}'. Supported values are: {', '.join(allowed)}.")
        fmt = body.get("output_format", "png")
        if "output_compression" in body:
            value = body["output_compression"]
            if not _is_int(value) or not 0 <= value <= 100:
                return invalid("output_compression", "output_compression must be an integer from 0 to 100.")
            if fmt not in ("jpeg", "webp"):
                return invalid("output_compression", "output_compression is only supported for the jpeg and webp "
                                                     "output formats.")
        if body.get("background") == "transparent" and fmt not in ("png", "webp"):
            return invalid("background", "Transparent background is only supported for the png and webp output "
                                         "formats.")
        if "stream" in body and not isinstance(body["stream"], bool):
            return invalid("stream", "stream must be a boolean.")
        if "partial_images" in body and not (_is_int(body["partial_images"]) and 0 <= body["partial_images"] <= 3):
            return invalid("partial_images", "partial_images must be an integer from 0 to 3.")
        return None

    # -- answers -----------------------------------------------------------------------------------
    def fault_reply(self, call: Recorded, fault: Fault) -> Reply | None:
        kind, message = fault.kind, fault.message
        model = self.model_of(call.json) if isinstance(call.json, dict) else "gpt-image-2"
        if kind == "rate_limit":
            return error(fault.status or 429, message or "Rate limit exceeded for images per minute in organization "
                         "org-fake. Limit: 5/1min. Current: 6/1min.", type_="requests", code="rate_limit_exceeded")
        if kind == "insufficient_quota":  # a 429 that is not a rate limit: retrying never helps
            return error(429, message or "You exceeded your current quota, please check your plan and billing "
                         "details.", type_="insufficient_quota", code="insufficient_quota")
        if kind == "billing_hard_limit":
            return error(400, message or "Billing hard limit has been reached", code="billing_hard_limit_reached")
        if kind == "moderation_blocked":
            return error(400, message or "Your request was rejected by the safety system. If you believe this is an "
                         "error, contact us at help.openai.com and include the request ID "
                         f"{self.request_id_of(call)}. safety_violations=[violence].",
                         type_="image_generation_user_error", code="moderation_blocked")
        if kind == "model_not_found":  # a model we do serve, announced as shut down
            return self.model_not_found(model, fault.status)
        if kind == "permission_denied":
            return error(403, message or f"Your organization must be verified to use the model `{model}`. Please go "
                         "to: https://platform.openai.com/settings/organization/general and click on Verify "
                         "Organization. If you just verified, it can take up to 15 minutes for access to propagate.",
                         code="permission_denied")
        if kind == "server_error":
            return error(fault.status or 500, message or "The server had an error while processing your request. "
                         "Sorry about that!", type_="server_error")
        if kind == "unauthorized":
            return error(401, message or "Incorrect API key provided: sk-***. ", code="invalid_api_key")
        if kind == "bad_request":
            return error(fault.status or 400, message or "Invalid request.", code="invalid_value")
        if kind == "no_image":
            return Reply(200, {"created": int(time.time()), "data": []})
        return None

    @staticmethod
    def dimensions(size: str) -> tuple[int, int]:
        width, height = (1024, 1024) if size == "auto" else map(int, size.split("x"))
        return width, height

    def usage_for(self, body: dict) -> dict:
        """The `usage` this fake answers for a request body, for a test to price on its own."""
        width, height = self.dimensions(body.get("size", "auto"))
        quality = "high" if body.get("quality", "auto") == "auto" else body["quality"]
        per_image = max(MIN_IMAGE_TOKENS, round(SQUARE_TOKENS[quality] * width * height / 1024 ** 2))
        if body.get("stream"):
            per_image += PARTIAL_IMAGE_TOKENS * body.get("partial_images", 0)
        output = per_image * body.get("n", 1)
        text = len(body["prompt"]) // 4 + 1
        usage = {"input_tokens": text, "input_tokens_details": {"text_tokens": text, "image_tokens": 0},
                 "output_tokens": output, "total_tokens": text + output}
        if self.output_tokens_details:
            usage["output_tokens_details"] = {"image_tokens": output - DETAIL_TEXT_TOKENS,
                                              "text_tokens": DETAIL_TEXT_TOKENS}
        return usage

    def _image(self, body: dict, fault: Fault) -> tuple[bytes, str, str]:
        """(bytes, content type, file extension) of the image answered, with the image faults applied. gif and
        svg, which images.py can't make, are answered as PNG bytes (output_format still says what was asked)."""
        width, height = self.dimensions(body.get("size", "auto"))
        fmt = body.get("output_format", "png")
        fmt = fmt if isinstance(fmt, str) and fmt in FORMATS else "png"
        data, content_type = (photo_sized(width, height, fmt) if self.photo_sized
                              else make_image(width, height, fmt, seed=body["prompt"]))
        if fault.kind == "non_image":
            data, content_type = NOT_IMAGES[fault.image]
        if fault.kind == "truncated_image":
            data = truncated(data)
        return data, content_type, fmt

    @staticmethod
    def _b64(data: bytes, fault: Fault) -> str:
        return "not*base64!" if fault.kind == "invalid_base64" else base64.b64encode(data).decode()

    def _rate_headers(self) -> dict:
        # A replenishing bucket, as OpenAI's: each call in the last minute takes one, back in 60/limit s.
        limit = self.load.per_minute or self.requests_per_minute
        now = time.time()
        with self._lock:
            used = sum(1 for call in self.calls if now - call.at < 60)
        return {"x-ratelimit-limit-requests": str(limit),
                "x-ratelimit-remaining-requests": str(max(0, limit - used)),
                "x-ratelimit-reset-requests": _duration(min(used, limit) * 60 / limit)}

    def success(self, call: Recorded, fault: Fault) -> Reply:
        body = call.json
        b64 = self._b64(self._image(body, fault)[0], fault)
        width, height = self.dimensions(body.get("size", "auto"))
        # The real API answers the settings it used, `auto` resolved.
        used = {"output_format": body.get("output_format", "png"), "size": f"{width}x{height}",
                "quality": "high" if body.get("quality", "auto") == "auto" else body["quality"],
                "background": "opaque" if body.get("background", "auto") == "auto" else body["background"]}
        if body.get("stream"):
            return Reply(200, body=self._events(body, b64, used), content_type="text/event-stream",
                         headers=self._rate_headers())
        payload = {"created": int(time.time()), "data": [{"b64_json": b64}] * body.get("n", 1), **used,
                   "usage": self.usage_for(body)}
        return Reply(200, payload, headers=self._rate_headers())

    def _events(self, body: dict, b64: str, used: dict) -> bytes:
        """Server-sent events: each image's partials, then its completed event; the usage (of the whole
        request) rides on the last completed event only, so a client that sums them counts it once."""
        created, n = int(time.time()), body.get("n", 1)
        events = []
        for index in range(n):
            events += [("image_generation.partial_image", {"b64_json": b64, "partial_image_index": partial})
                       for partial in range(body.get("partial_images", 0))]
            events.append(("image_generation.completed",
                           {"b64_json": b64, **({"usage": self.usage_for(body)} if index == n - 1 else {})}))
        return b"".join(f"event: {kind}\ndata: {json.dumps({'type': kind, 'created_at': created, **used, **data})}"
                        "\n\n".encode() for kind, data in events)

    # -- GET /v1/models ----------------------------------------------------------------------------
    def get(self, request: Recorded) -> Reply:
        path = urlsplit(request.path).path
        if path != "/v1/models" and not path.startswith("/v1/models/"):
            return super().get(request)
        with self._lock:
            self.model_list_calls.append(request)
        if denied := self._auth_error(request):
            return denied
        headers = {"x-request-id": f"req_{uuid.uuid4().hex}"} if self.sends_request_ids else {}
        entries = self.model_entries()
        if path == "/v1/models":
            return Reply(200, {"object": "list", "data": entries}, headers=headers)
        wanted = path.removeprefix("/v1/models/")  # retrieve one: GET /v1/models/{id}
        found = next((entry for entry in entries if entry["id"] == wanted), None)
        if found is None:
            return self.model_not_found(wanted, 404)
        return Reply(200, found, headers=headers)

    def model_entries(self) -> list[dict]:
        with self._lock:
            dates = dict(self.shutdown_dates)
        return [{"id": name, "object": "model", "owned_by": "system", "shutdown_date": dates.get(name),
                 "created": int(datetime.fromisoformat(spec.released).replace(tzinfo=UTC).timestamp())}
                for name, spec in MODELS.items()]


class FakeOpenAICompatible(FakeOpenAI):
    """A self-hosted OpenAI-compatible server (LocalAI and the like): its own model names, any WxH size,
    unknown fields ignored, no `usage`, no x-request-id or rate headers, and URLs unless answer_with = "b64".
    output_format png/jpeg/webp is honoured, anything else answers PNG; the other GPT options are ignored."""

    sends_request_ids = False

    def __init__(self, api_key: str = "sk-local-fake", models=("flux-local", "sdxl-turbo")):
        self.models = tuple(models)
        super().__init__(api_key)

    def reset(self):
        super().reset()
        with self._lock:
            self.answer_with = "url"  # or "b64"

    def model_of(self, body: dict) -> str:
        return body.get("model", self.models[0])  # such servers use their loaded model

    def _model_error(self, model) -> Reply | None:
        return None if model in self.models else self.model_not_found(model)

    def model_not_found(self, model: str, status: int | None = None) -> Reply:
        return error(status or self.model_not_found_status, f"The model `{model}` does not exist.",
                     code="model_not_found")

    def check(self, call: Recorded) -> Reply | None:
        if denied := self._auth_error(call):
            return denied
        body = call.json
        if not isinstance(body, dict):
            return error(400, "We could not parse the JSON body of your request.")
        return (self._model_error(self.model_of(body)) or self._prompt_error(body) or self._n_error(body)
                or self._size_error(body.get("size", "auto")))

    def _size_error(self, size) -> Reply | None:
        if size == "auto" or (isinstance(size, str) and re.fullmatch(r"[1-9]\d*x[1-9]\d*", size)):
            return None
        return self._bad_size(size, "expected WIDTHxHEIGHT")

    def success(self, call: Recorded, fault: Fault) -> Reply:
        body = call.json
        data, content_type, ext = self._image(body, fault)
        items = []
        for _ in range(body.get("n", 1)):
            if self.answer_with == "b64":
                items.append({"b64_json": self._b64(data, fault)})
                continue
            url = self.store_file(f"{uuid.uuid4().hex}.{ext}", data, fault.content_type or content_type)
            if fault.kind == "expired_url":
                self.expire(url)
            items.append({"url": url})
        return Reply(200, {"created": int(time.time()), "data": items})

    def model_entries(self) -> list[dict]:
        return [{"id": name, "object": "model", "created": 0, "owned_by": "local"} for name in self.models]
