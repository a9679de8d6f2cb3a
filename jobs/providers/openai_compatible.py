"""A self-hosted server or gateway that takes OpenAI's Images request at its own base URL, with its
own model names, often without `usage` and sometimes answering a URL instead of base64."""

import re

from jobs.providers import catalog
from jobs.providers.base import Credentials, ImageRequest, ProviderError
from jobs.providers.catalog import ModelSpec
from jobs.providers.openai import OpenAIProvider

MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,99}")


class OpenAICompatibleProvider(OpenAIProvider):
    name = "openai_compatible"
    label = "OpenAI-compatible server"
    default_base_url = None  # there is no default server: the account names its own
    requires_api_key = False  # many self-hosted servers take none
    models = {}
    custom_models = True

    def custom_model(self, model: str) -> ModelSpec | None:
        return catalog.custom_model(self.name, model) if MODEL_NAME.fullmatch(model or "") else None

    def request_body(self, request: ImageRequest) -> dict:
        """Only the fields every such server knows; OpenAI's newer ones (quality levels, background,
        moderation) are refused by some of them."""
        body = {"model": request.model, "prompt": request.prompt, "n": 1,
                "size": f"{request.width}x{request.height}"}
        if request.end_user:
            body["user"] = request.end_user
        return body

    def check_request(self, request: ImageRequest, credentials: Credentials | None = None) -> ModelSpec:
        if not (credentials and credentials.base_url):
            raise ProviderError(f"{self.label}: set the server's base URL in Settings → Image generation.",
                                permanent=True, code="missing_base_url")
        return super().check_request(request, credentials)
