"""The outbound guard: the account's key only ever goes to a public address, or to one the operator
allows (OUTBOUND_ALLOW), checked when the base URL is saved and again right before each call."""


import pytest

from jobs import outbound
from jobs.providers.base import Credentials, ImageRequest, ProviderError
from jobs.providers.openai import OpenAIProvider
from jobs.providers.runware import RunwareProvider
from tests.api_helpers import SETTINGS, ApiClient
from tests.canary import Canary
from tests.fakes import Fault


@pytest.fixture
def api(client, personas):
    return ApiClient(client, personas.owner)


@pytest.fixture
def nothing_allowed(monkeypatch):
    monkeypatch.setenv("OUTBOUND_ALLOW", "")


@pytest.mark.parametrize("base_url, says", [
    ("http://169.254.169.254/v1", "169.254.169.254"),
    ("http://10.0.0.1/v1", "10.0.0.1"),
    ("http://127.0.0.1:6379", "127.0.0.1"),
    ("http://localhost:8080/v1", "localhost resolves to"),
    ("http://[::1]:8080/v1", "::1"),
    ("http://0.0.0.0/v1", "0.0.0.0"),
    ("http://2130706433/v1", "resolves to 127.0.0.1"),
    ("http://[::ffff:127.0.0.1]/v1", "::ffff:127.0.0.1"),
    ("http://api.example.com/v1\r\nX-Injected: 1", "line breaks"),
    ("https://api.openai.com/v1#", "a query or a fragment"),
    ("https://api.openai.com/v1?path=/x", "a query or a fragment"),
    ("https://user:pw@api.openai.com/v1", "user name or password"),
    ("ftp://api.openai.com/v1", "not an http(s) URL"),
    ("http://no-such-host.invalid/v1", "could not be resolved"),
])
def test_internal_or_malformed_base_urls_are_refused_at_save_time(api, nothing_allowed, base_url, says):
    response = api.put(SETTINGS, json={"provider": "openai", "model": "gpt-image-2", "api_key": "sk-1234",
                                       "base_url": base_url})
    assert response.status_code == 400, response.get_json()
    assert says in response.get_json()["fields"]["base_url"]
    assert api.get(SETTINGS).get_json()["base_url"] == ""  # nothing was stored


def test_the_operator_allows_an_internal_server_by_host_or_host_and_port(api, monkeypatch):
    monkeypatch.setenv("OUTBOUND_ALLOW", "10.0.0.5:7860, 127.0.0.1")
    ok = api.put(SETTINGS, json={"provider": "openai_compatible", "model": "sd", "base_url": "http://127.0.0.1:9/v1"})
    assert ok.status_code == 200, ok.get_json()
    assert outbound.allowed_by_operator("10.0.0.5", 7860) and not outbound.allowed_by_operator("10.0.0.5", 22)


@pytest.mark.parametrize("provider", [OpenAIProvider(), RunwareProvider()])
def test_a_base_url_forced_into_the_database_is_refused_again_before_the_call(nothing_allowed, provider):
    canary = Canary()
    try:
        model = "gpt-image-2" if provider.name == "openai" else "runware:100@1"
        request = ImageRequest("a cat", model, 1024, 1024)
        with pytest.raises(ProviderError) as caught:
            provider.generate(request, Credentials("sk-real-key-0000", f"http://127.0.0.1:{canary.port}/v1"),
                              timeout=(1, 1))
        assert caught.value.permanent and caught.value.code == "outbound_refused"
        assert "127.0.0.1, a private, loopback or otherwise internal address" in caught.value.message
        assert canary.hits == 0  # the key never left
    finally:
        canary.close()


def test_a_redirect_is_never_followed(fake_openai):
    fake_openai.script(Fault("raw", status=302, body=b"", content_type="text/plain"))
    with pytest.raises(ProviderError, match="redirect"):
        OpenAIProvider().generate(ImageRequest("a cat", "gpt-image-2", 1024, 1024),
                                  Credentials(fake_openai.api_key, fake_openai.base_url), timeout=(2, 5))
    assert fake_openai.call_count == 1


def test_a_raw_error_body_never_reaches_staff(fake_openai, caplog):
    fake_openai.script(Fault("raw", status=500, body=b"upstream: internal-token=SEKRIT-42", content_type="text/plain"),
                       Fault("raw", status=400, body=b"<html>debug page SEKRIT-42</html>", content_type="text/html"))
    for _ in range(2):
        with pytest.raises(ProviderError) as caught:
            OpenAIProvider().generate(ImageRequest("a cat", "gpt-image-2", 1024, 1024),
                                      Credentials(fake_openai.api_key, fake_openai.base_url), timeout=(2, 5))
        assert "SEKRIT" not in caught.value.message and "HTTP" in caught.value.message
    assert "SEKRIT-42" in caplog.text  # the worker log keeps it for whoever debugs


@pytest.mark.parametrize("address, public", [
    ("8.8.8.8", True), ("10.1.2.3", False), ("172.16.0.1", False), ("192.168.1.1", False), ("127.0.0.1", False),
    ("169.254.169.254", False), ("0.0.0.0", False), ("100.64.0.1", False), ("224.0.0.1", False),
    ("::1", False), ("fe80::1", False), ("fc00::1", False), ("::ffff:10.0.0.1", False), ("2002:0a00:0001::", False),
    ("2606:4700:4700::1111", True),
])
def test_what_counts_as_a_public_address(address, public):
    import ipaddress

    assert outbound.is_public(ipaddress.ip_address(address)) is public
