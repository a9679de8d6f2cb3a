"""pytest fixtures for the fake providers; import them into a conftest (or a test module) to use them."""

import pytest

from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.runware_server import FakeRunware


@pytest.fixture
def fake_openai():
    """A fresh fake OpenAI for one test: `.base_url`, `.api_key`, `.script(...)`, `.calls`."""
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def fake_runware():
    """A fresh fake Runware for one test: `.base_url`, `.api_key`, `.script(...)`, `.calls`."""
    with FakeRunware() as server:
        yield server


@pytest.fixture
def fake_compatible():
    """A fresh fake OpenAI-compatible server (no prices, no usage: the account sets price_per_image)."""
    from tests.fakes.openai_server import FakeOpenAICompatible

    with FakeOpenAICompatible() as server:
        yield server
