"""Fake image providers: real HTTP servers on 127.0.0.1 speaking OpenAI's (and an OpenAI-compatible
server's) and Runware's wire formats.

    with FakeOpenAI() as server:
        server.script("rate_limit", Fault("server_error", status=503))   # the next two calls fail
        server.on_prompt("forbidden", "moderation_blocked")               # any such prompt, always
        OpenAIProvider().generate(request, Credentials(server.api_key, server.base_url), timeout=(2, 10))
        assert server.call_count == 3
"""

from tests.fakes.base import FakeServer, Fault, Recorded, Reply
from tests.fakes.openai_server import FakeOpenAI, FakeOpenAICompatible
from tests.fakes.runware_server import FakeRunware

__all__ = ["Fault", "FakeOpenAI", "FakeOpenAICompatible", "FakeRunware", "FakeServer", "Recorded", "Reply"]
