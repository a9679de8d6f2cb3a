"""A fake OpenAI Images API (`POST /v1/images/generations`) that validates like the real one."""

import base64
import time
import uuid

from tests.fakes.base import FakeServer, Fault, Recorded, Reply
from tests.fakes.images import NOT_IMAGES, make_image, truncated

GPT_SIZES = ("1024x1024", "1536x1024", "1024x1536", "auto")
GPT = {"sizes": GPT_SIZES, "max_chars": 32000, "max_n": 10, "qualities": ("low", "medium", "high", "auto"),
       "fields": {"output_format", "output_compression", "background", "moderation", "quality"}}
MODELS = {
    "dall-e-2": {"sizes": ("256x256", "512x512", "1024x1024"), "max_chars": 1000, "max_n": 10,
                 "qualities": ("standard",), "fields": {"response_format", "quality"}},
    "dall-e-3": {"sizes": ("1024x1024", "1792x1024", "1024x1792"), "max_chars": 4000, "max_n": 1,
                 "qualities": ("standard", "hd"), "fields": {"response_format", "quality", "style"}},
    "gpt-image-1": GPT, "gpt-image-1-mini": GPT, "gpt-image-1.5": GPT,
}
COMMON_FIELDS = {"model", "prompt", "n", "size", "user"}
# Output tokens a GPT image costs by quality and shape (OpenAI's published counts).
TOKENS = {"low": (272, 408), "medium": (1056, 1584), "high": (4160, 6240)}


def error(status: int, message: str, *, type_="invalid_request_error", code=None, param=None) -> Reply:
    return Reply(status, {"error": {"message": message, "type": type_, "param": param, "code": code}})


class FakeOpenAI(FakeServer):
    generation_path = "/v1/images/generations"
    load_overflow = "reject"

    def __init__(self, api_key: str = "sk-fake-openai-0123456789abcdefXYZ"):
        super().__init__(api_key)

    def prompt_of(self, payload):
        return payload.get("prompt")

    def check(self, call: Recorded) -> Reply | None:
        if call.headers.get("Authorization") != f"Bearer {self.api_key}":
            given = (call.headers.get("Authorization") or "").removeprefix("Bearer ")
            return error(401, f"Incorrect API key provided: {given[:3]}***{given[-4:]}. You can find your API "
                              "key at https://platform.openai.com/account/api-keys.", code="invalid_api_key")
        body = call.json
        if not isinstance(body, dict):
            return error(400, "We could not parse the JSON body of your request.")
        model = body.get("model", "dall-e-2")
        spec = MODELS.get(model)
        if spec is None:
            return error(400, f"Invalid value: '{model}'. Supported values are: {', '.join(MODELS)}.",
                         code="invalid_value", param="model")
        for name in body:
            if name not in COMMON_FIELDS | spec["fields"]:
                return error(400, f"Unknown parameter: '{name}'.", code="unknown_parameter", param=name)
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            return error(400, "Missing required parameter: 'prompt'.", code="missing_required_parameter",
                         param="prompt")
        if len(prompt) > spec["max_chars"]:
            return error(400, f"Invalid 'prompt': string too long. Expected a string with maximum length "
                              f"{spec['max_chars']}, but got a string with length {len(prompt)} instead.",
                         code="string_above_max_length", param="prompt")
        n = body.get("n", 1)
        if not isinstance(n, int) or not 1 <= n <= spec["max_n"]:
            message = "You must provide n=1 for this model." if spec["max_n"] == 1 else f"Invalid n: {n}"
            return error(400, message, code="invalid_value", param="n")
        if body.get("size", "1024x1024") not in spec["sizes"]:
            return error(400, f"'{body.get('size')}' is not one of {list(spec['sizes'])} - 'size'",
                         code="invalid_size", param="size")
        checks = {"quality": spec["qualities"], "style": ("vivid", "natural"), "response_format": ("url", "b64_json"),
                  "output_format": ("png", "jpeg", "webp"), "background": ("transparent", "opaque", "auto"),
                  "moderation": ("low", "auto")}
        for name, allowed in checks.items():
            if name in body and body[name] not in allowed:
                return error(400, f"Invalid value: '{body[name]}'. Supported values are: {', '.join(allowed)}.",
                             code="invalid_value", param=name)
        compression = body.get("output_compression", 100)
        if not isinstance(compression, int) or not 0 <= compression <= 100:
            return error(400, "output_compression must be between 0 and 100", code="invalid_value",
                         param="output_compression")
        return None

    def fault_reply(self, call: Recorded, fault: Fault) -> Reply | None:
        kind, message = fault.kind, fault.message
        if kind == "rate_limit":
            return error(fault.status or 429, message or "Rate limit exceeded for images per minute in organization "
                         "org-fake. Limit: 5/1min. Current: 6/1min.", type_="requests", code="rate_limit_exceeded")
        if kind == "insufficient_quota":
            return error(429, message or "You exceeded your current quota, please check your plan and billing "
                         "details.", type_="insufficient_quota", code="insufficient_quota")
        if kind == "content_policy":
            return error(400, message or "Your request was rejected as a result of our safety system. Your prompt "
                         "may contain text that is not allowed by our safety system.", code="content_policy_violation")
        if kind == "moderation_blocked":
            return error(400, message or "Your request was rejected by the safety system. "
                         "safety_violations=[violence].", type_="image_generation_user_error",
                         code="moderation_blocked")
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

    def success(self, call: Recorded, fault: Fault) -> Reply:
        body = call.json
        model = body.get("model", "dall-e-2")
        size = body.get("size", "1024x1024")
        width, height = (1024, 1024) if size == "auto" else map(int, size.split("x"))
        gpt = model.startswith("gpt-image")
        fmt = body.get("output_format", "png") if gpt else "png"
        data, content_type = make_image(width, height, fmt, seed=body["prompt"])
        if fault.kind == "non_image":
            data, content_type = NOT_IMAGES[fault.image]
        if fault.kind == "truncated_image":
            data = truncated(data)
        item = {}
        if gpt or body.get("response_format") == "b64_json":
            item["b64_json"] = "not*base64!" if fault.kind == "invalid_base64" else base64.b64encode(data).decode()
        else:
            url = self.store_file(f"{uuid.uuid4().hex}.{fmt}", data, fault.content_type or content_type)
            if fault.kind == "expired_url":
                self.expire(url)
            item["url"] = url
        if model == "dall-e-3":
            item["revised_prompt"] = f"A detailed rendering of: {body['prompt']}"
        payload = {"created": int(time.time()), "data": [item] * body.get("n", 1)}
        if gpt:
            quality = body.get("quality", "auto")
            output = TOKENS.get(quality, TOKENS["medium"])[0 if width == height else 1]
            prompt_tokens = len(body["prompt"]) // 4 + 1
            payload["usage"] = {"input_tokens": prompt_tokens, "output_tokens": output,
                                "total_tokens": prompt_tokens + output,
                                "input_tokens_details": {"text_tokens": prompt_tokens, "image_tokens": 0}}
        return Reply(200, payload)
