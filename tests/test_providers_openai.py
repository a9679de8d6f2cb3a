import base64
import io
import time
from decimal import Decimal

import pytest
import requests
from PIL import Image

from jobs.providers.base import Credentials, ImageRequest, ProviderError
from jobs.providers.openai import OpenAIProvider
from jobs.providers.openai_compatible import OpenAICompatibleProvider
from tests.fakes import FakeOpenAI, Fault
from tests.fakes.openai_server import FakeOpenAICompatible

PROVIDER = OpenAIProvider()
ACTIVE = ["gpt-image-2", "gpt-image-2.5-flare", "gpt-image-2.5-sunburst", "gpt-image-2.6-flare",
          "gpt-image-2.6-sunburst"]


def make_request(model="gpt-image-2", size=(1024, 1024), prompt="a lighthouse at dusk", **fields):
    return ImageRequest(prompt, model, *size, **fields)


def generate(server, request=None, *, provider=PROVIDER, key=None, timeout=(2, 10)):
    credentials = Credentials(key or server.api_key, server.base_url)
    return provider.generate(request or make_request(), credentials, timeout=timeout)


def failure(server, request=None, **kwargs) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        generate(server, request, **kwargs)
    return caught.value


def usage_cost(usage) -> Decimal:
    """OpenAI's token prices (USD per 1M): text in 5, image in 8, image out 30."""
    details = usage["input_tokens_details"]
    return (Decimal(details["text_tokens"] * 5 + details["image_tokens"] * 8 + usage["output_tokens"] * 30)
            / 1_000_000)


# -- request shapes ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("model", ACTIVE)
@pytest.mark.parametrize("output_format, sent, pil_format, compression", [
    ("png", "png", "PNG", None), ("jpg", "jpeg", "JPEG", 88), ("webp", "webp", "WEBP", 85)])
def test_gpt_image_models_are_asked_for_the_accounts_format_natively_and_answer_bytes(
        fake_openai, model, output_format, sent, pil_format, compression):
    request = make_request(model, (1536, 864), output_format=output_format, output_compression=compression,
                           quality="high", end_user="acct_0123")
    image = generate(fake_openai, request)
    body = fake_openai.calls[0].json
    expected = {"model": model, "prompt": "a lighthouse at dusk", "n": 1, "size": "1536x864", "quality": "high",
                "output_format": sent, "background": "opaque", "moderation": "auto", "user": "acct_0123"}
    if compression is not None:
        expected["output_compression"] = compression
    assert body == expected  # no response_format: the GPT image models refuse it
    picture = Image.open(io.BytesIO(image.data))
    assert (picture.format, picture.size) == (pil_format, (1536, 864))
    assert image.url is None and image.download_hosts == ()
    assert image.request_id == fake_openai.request_ids[0] and image.request_id.startswith("req_")


def test_the_quality_is_the_models_default_when_the_account_chose_none(fake_openai):
    generate(fake_openai, make_request())
    assert fake_openai.calls[0].json["quality"] == "medium"


@pytest.mark.parametrize("details", [False, True])
@pytest.mark.parametrize("quality, size", [("low", (1024, 1024)), ("high", (1536, 1024)), ("auto", (2048, 1152))])
def test_the_cost_is_the_answers_usage_priced_per_token(fake_openai, quality, size, details):
    fake_openai.output_tokens_details = details
    image = generate(fake_openai, make_request(size=size, quality=quality, prompt="a lighthouse " * 40))
    usage = fake_openai.usage_for(fake_openai.calls[0].json)
    expected = usage_cost(usage)
    if details:  # 20 output tokens are text: priced as image output too (no separate price is published)
        assert "output_tokens_details" in usage
    assert image.cost == expected and image.cost > 0


def test_without_usage_the_cost_is_none_and_the_estimate_stands_in(fake_openai):
    answer = b'{"created": 1, "data": [{"b64_json": "' + base64.b64encode(b"\x89PNG...") + b'"}]}'
    fake_openai.script(Fault("raw", status=200, body=answer, content_type="application/json"))
    request = make_request(size=(1024, 1536), quality="high")
    image = generate(fake_openai, request)
    assert image.cost is None and image.data == b"\x89PNG..."
    assert PROVIDER.estimate_cost(request) == Decimal("0.165")


@pytest.mark.parametrize("size, quality, price", [
    ((1024, 1024), "low", "0.006"), ((1024, 1024), "medium", "0.053"), ((1024, 1024), "high", "0.211"),
    ((1536, 1024), "low", "0.005"), ((1024, 1536), "medium", "0.041"), ((1536, 1024), "high", "0.165"),
    ((1024, 1024), "auto", "0.211"), ((1536, 864), "medium", "0.034594"),
])
def test_estimates_follow_the_published_figures_and_scale_with_pixels(size, quality, price):
    assert PROVIDER.estimate_cost(make_request(size=size, quality=quality)) == Decimal(price)


def test_a_negative_prompt_is_never_sent(fake_openai):
    generate(fake_openai, make_request(negative_prompt="blurry, text"))
    assert "blurry" not in fake_openai.calls[0].body.decode()
    assert not any(spec.supports_negative_prompt for spec in PROVIDER.models.values())


def test_a_base_url_with_a_trailing_slash_still_works(fake_openai):
    credentials = Credentials(fake_openai.api_key, fake_openai.base_url + "/")
    assert PROVIDER.generate(make_request(), credentials, timeout=(2, 10)).data
    assert fake_openai.calls[0].path == "/v1/images/generations"


# -- what is refused before any call -------------------------------------------------------------------------

@pytest.mark.parametrize("request_, code, says", [
    (make_request(size=(1000, 1000)), "invalid_size", "multiples of 16"),
    (make_request(size=(3840, 1024)), "invalid_size", "between 1:3 and 3:1"),
    (make_request(size=(4096, 2048)), "invalid_size", "from 256 to 3840"),
    (make_request(size=(3584, 2560)), "invalid_size", "8,294,400 pixels"),
    (make_request(prompt="x" * 32001), "prompt_too_long", "32000"),
    (make_request("gpt-image-4"), "invalid_model", "gpt-image-2"),
    (make_request(quality="hd"), "invalid_quality", "low, medium, high, auto"),
    (make_request(quality="xhigh"), "invalid_quality", "low, medium, high, auto"),
])
def test_an_invalid_request_is_refused_before_any_call(fake_openai, request_, code, says):
    error = failure(fake_openai, request_)
    assert (error.permanent, error.code, fake_openai.call_count) == (True, code, 0)
    assert says in error.message


def test_xhigh_and_max_are_taken_by_the_models_that_have_them(fake_openai):
    generate(fake_openai, make_request("gpt-image-2.6-sunburst", quality="max"))
    assert fake_openai.calls[0].json["quality"] == "max"


def test_a_missing_key_is_refused_before_any_call(fake_openai):
    with pytest.raises(ProviderError, match="needs an API key") as caught:
        PROVIDER.generate(make_request(), Credentials(None, fake_openai.base_url), timeout=(2, 10))
    assert caught.value.permanent and fake_openai.call_count == 0


def test_the_fake_refuses_what_the_real_api_refuses(fake_openai):
    def post(body):
        return requests.post(fake_openai.base_url + "/images/generations", json=body, timeout=5,
                             headers={"Authorization": f"Bearer {fake_openai.api_key}"})

    gpt = post({"model": "gpt-image-2", "prompt": "a cat", "response_format": "b64_json"})
    assert (gpt.status_code, gpt.json()["error"]["code"]) == (400, "unknown_parameter")
    size = post({"model": "gpt-image-2", "prompt": "a cat", "size": "1000x1000"})
    assert (size.status_code, size.json()["error"]["code"]) == (400, "invalid_size")
    retired = post({"model": "dall-e-3", "prompt": "a cat"})
    assert (retired.status_code, retired.json()["error"]["code"]) == (404, "model_not_found")
    assert fake_openai.call_count == 3


# -- error mapping -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("fault, message, permanent", [
    ("unauthorized", "OpenAI rejected the API key (invalid_api_key): check the key in Settings", True),
    ("permission_denied", "OpenAI refused this API key access (permission_denied): Your organization must", True),
    ("insufficient_quota", "OpenAI: the account behind this API key has no credit left (insufficient_quota). "
                           "Add credit in OpenAI's billing settings, then retry.", True),
    ("billing_hard_limit", "OpenAI: the billing hard limit of the account behind this API key has been reached", True),
    ("moderation_blocked", "OpenAI's safety system refused this image (violence). Edit the prompt", True),
    (Fault("moderation_blocked", message="Rejected. safety_violations=[sexual, self-harm]."),
     "OpenAI's safety system refused this image (sexual, self-harm).", True),
    ("model_not_found", "OpenAI says the model gpt-image-2 does not exist any more", True),
    (Fault("model_not_found", status=400), "OpenAI says the model gpt-image-2 does not exist any more", True),
    (Fault("bad_request", message="Invalid 'quality'."), "OpenAI rejected the request (invalid_value): Invalid", True),
    (Fault("bad_request", status=404, message="No such route"), "OpenAI rejected the request (HTTP 404)", True),
    ("no_image", "OpenAI answered without an image", True),
    ("invalid_base64", "OpenAI returned an image that is not valid base64", True),
    (Fault("raw", status=200, body=b"<html>gateway</html>"), "OpenAI answered without an image", True),
    ("rate_limit", "OpenAI rate limit: Rate limit exceeded for images per minute", False),
    # a proxy's plain-text body is never quoted to staff (it goes to the worker log)
    (Fault("raw", status=429, body=b"error code: 1015"), "OpenAI rate limit: HTTP 429", False),
    (Fault("server_error", status=500), "OpenAI could not make the image now (HTTP 500)", False),
    (Fault("server_error", status=502), "OpenAI could not make the image now (HTTP 502)", False),
    (Fault("server_error", status=503), "OpenAI could not make the image now (HTTP 503)", False),
    (Fault("raw", status=408, body=b"Request Timeout"), "OpenAI could not make the image now (HTTP 408)", False),
    (Fault("raw", status=409, body=b"{}"), "OpenAI could not make the image now (HTTP 409)", False),
])
def test_each_error_answer_maps_to_a_readable_provider_error(fake_openai, fault, message, permanent):
    fake_openai.script(fault)
    error = failure(fake_openai)
    assert error.message.startswith(message) and str(error) == error.message, error.message
    assert error.permanent is permanent
    assert error.request_id == fake_openai.request_ids[0]  # every call's id is kept, failed ones too


@pytest.mark.parametrize("fault, blocks", [("insufficient_quota", True), ("billing_hard_limit", True),
                                           ("rate_limit", False), ("moderation_blocked", False)])
def test_only_a_key_without_credit_blocks_the_key(fake_openai, fault, blocks):
    fake_openai.script(fault)
    assert failure(fake_openai).blocks_key is blocks


def test_a_wrong_key_is_a_permanent_invalid_key_error(fake_openai):
    error = failure(fake_openai, key="sk-wrong-key-000000")
    assert (error.permanent, error.status, error.code) == (True, 401, "invalid_api_key")


def test_a_429_carries_the_retry_after_it_was_given(fake_openai):
    fake_openai.script(Fault("rate_limit", retry_after="7"), Fault("raw", status=429, body=b"slow down",
                                                                   retry_after_ms="1500"))
    assert failure(fake_openai).retry_after == 7.0
    assert failure(fake_openai).retry_after == 1.5


# -- an OpenAI-compatible server -----------------------------------------------------------------------------

@pytest.mark.parametrize("answer_with", ["url", "b64"])
def test_a_compatible_server_takes_its_own_model_names_and_sizes_and_answers_without_usage(answer_with):
    provider = OpenAICompatibleProvider()
    with FakeOpenAICompatible(models=("flux-local",)) as server:
        server.answer_with = answer_with
        request = make_request("flux-local", (1000, 600), price_per_image=Decimal("0.003"), quality="ignored")
        image = generate(server, request, provider=provider)
        assert server.calls[0].json == {"model": "flux-local", "prompt": "a lighthouse at dusk", "n": 1,
                                        "size": "1000x600"}
        if answer_with == "url":
            assert image.url.startswith(server.origin) and image.download_hosts == (
                f"127.0.0.1:{server.origin.rsplit(':', 1)[1]}",)
        else:
            assert image.data
        assert image.cost is None and provider.estimate_cost(request) == Decimal("0.003")


def test_a_compatible_server_needs_its_base_url_and_a_plausible_model_name(fake_openai):
    provider = OpenAICompatibleProvider()
    with pytest.raises(ProviderError, match="set the server's base URL"):
        provider.generate(make_request("flux-local"), Credentials(None, None), timeout=(1, 1))
    with pytest.raises(ProviderError, match="has no model"):
        provider.generate(make_request("bad name; drop"), Credentials(None, fake_openai.base_url), timeout=(1, 1))


# -- URL answers (only OpenAI-compatible servers send them now) ----------------------------------------------

@pytest.mark.parametrize("url, allowed", [
    ("https://oaidalleapiprodscus.blob.core.windows.net/private/org/img.png?se=2026-01-01",
     ("oaidalleapiprodscus.blob.core.windows.net", "api.openai.com:443")),
    # a port in the answer never becomes an exact host:port entry (those may reach private addresses)
    ("https://oaidalleapiprodscus.blob.core.windows.net:8443/img.png",
     ("oaidalleapiprodscus.blob.core.windows.net", "api.openai.com:443")),
    ("https://someoneelse.blob.core.windows.net/img.png", ("api.openai.com:443",)),
    ("http://oaidalleapiprodscus.blob.core.windows.net/img.png", ("api.openai.com:443",)),
    ("https://oaidalle.blob.core.windows.net.evil.test/img.png", ("api.openai.com:443",)),
    ("https://api.openai.com/files/img.png", ("api.openai.com:443",)),
])
def test_a_url_may_only_be_downloaded_from_openais_cdn_or_the_server_asked(url, allowed):
    assert PROVIDER.download_hosts(url, "https://api.openai.com/v1") == allowed


@pytest.mark.parametrize("fault, start", [(Fault("non_image", image="svg"), b"<svg"),
                                          (Fault("non_image", image="pdf"), b"%PDF"), ("truncated_image", b"\x89PNG")])
def test_wrong_image_bytes_are_passed_on_for_storage_to_judge(fake_openai, fault, start):
    fake_openai.script(fault)
    assert generate(fake_openai).data.startswith(start)


# -- transport -----------------------------------------------------------------------------------------------

def test_a_server_that_does_not_answer_in_time_may_have_charged_and_is_not_retried(fake_openai):
    fake_openai.script(Fault("timeout", delay=5))
    started = time.monotonic()
    error = failure(fake_openai, timeout=(2, 0.3))
    assert error.message.startswith("OpenAI did not answer within 0.3 s; the provider may still have made the image")
    assert error.permanent and error.maybe_charged
    assert time.monotonic() - started < 2


def test_a_refused_connection_is_transient():
    with FakeOpenAI() as server:
        base_url, key = server.base_url, server.api_key  # a port nobody listens on once it stops
    with pytest.raises(ProviderError) as caught:
        PROVIDER.generate(make_request(), Credentials(key, base_url), timeout=(1, 1))
    error = caught.value
    assert error.message == "OpenAI refused the connection" and not error.permanent


@pytest.mark.parametrize("fault, message", [("reset", "OpenAI closed the connection before answering"),
                                            ("cut_body", "OpenAI broke off its answer mid-way")])
def test_a_broken_connection_is_transient(fake_openai, fault, message):
    fake_openai.script(fault)
    error = failure(fake_openai)
    assert (error.message, error.permanent) == (message, False)


def test_a_body_that_never_ends_gives_up_after_the_read_timeout(fake_openai):
    fake_openai.script("never_ending_body")
    started = time.monotonic()
    error = failure(fake_openai, timeout=(2, 0.5))
    assert error.message.startswith("OpenAI did not finish its answer within 0.5 s; the provider may still")
    assert error.permanent and error.maybe_charged
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("chunked", [False, True])
def test_a_huge_body_is_abandoned_at_the_size_limit(fake_openai, chunked):
    small = OpenAIProvider()
    small.max_answer_bytes = 1024 * 1024
    fake_openai.script(Fault("huge_body", size=5 * 1024 * 1024, chunked=chunked))
    error = failure(fake_openai, provider=small)
    assert error.permanent and "larger than 1 MiB" in error.message


def test_the_default_size_limit_is_64_mib(fake_openai):
    fake_openai.script(Fault("huge_body", size=80 * 1024 * 1024, chunked=True))
    assert "larger than 64 MiB" in failure(fake_openai).message


# -- the key -----------------------------------------------------------------------------------------------

def test_the_key_is_sent_only_in_the_authorization_header(fake_openai):
    generate(fake_openai, make_request())
    call = fake_openai.calls[0]
    assert call.headers["Authorization"] == f"Bearer {fake_openai.api_key}"
    assert [name for name, value in call.headers.items() if fake_openai.api_key in value] == ["Authorization"]
    assert fake_openai.api_key not in call.body.decode() and fake_openai.api_key not in call.path


@pytest.mark.parametrize("make_fault", [
    lambda key: Fault("bad_request", message=f"{key} is not allowed here"),
    lambda key: Fault("raw", status=500, body=f"upstream said {key}".encode()),
    lambda key: Fault("timeout", delay=2),
    lambda key: Fault("reset"),
], ids=["echoed-in-json", "echoed-in-text", "timeout", "reset"])
def test_the_key_never_appears_in_an_error(fake_openai, make_fault):
    fake_openai.script(make_fault(fake_openai.api_key))
    error = failure(fake_openai, timeout=(2, 0.3))
    chain, current = [], error
    while current is not None:
        chain += [str(current), repr(current), repr(getattr(current, "args", ""))]
        current = current.__cause__ or current.__context__
    assert not [text for text in chain if fake_openai.api_key in text]
    assert fake_openai.api_key not in repr(Credentials(fake_openai.api_key, fake_openai.base_url))
