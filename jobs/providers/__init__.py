"""The providers, registered by name: adding one is a module, one line here and one test file."""

from jobs.providers.base import ProviderError
from jobs.providers.openai import OpenAIProvider
from jobs.providers.openai_compatible import OpenAICompatibleProvider
from jobs.providers.placeholder import PlaceholderProvider
from jobs.providers.runware import RunwareProvider

PROVIDERS = {
    "placeholder": PlaceholderProvider(),
    "openai": OpenAIProvider(),
    "runware": RunwareProvider(),
    "openai_compatible": OpenAICompatibleProvider(),
}


def get_provider(name: str):
    try:
        return PROVIDERS[name]
    except KeyError:
        raise ProviderError(f"Unknown image provider {name!r}; choose one of: {', '.join(PROVIDERS)}.",
                            permanent=True, code="unknown_provider") from None
