import base64
import io
import time
from decimal import Decimal

import pytest
import requests
from PIL import Image

from jobs.providers.base import Credentials, ImageRequest, ProviderError
from jobs.providers.openai import OpenAIProvider
from tests.fakes import FakeOpenAI, Fault

PROVIDER = OpenAIProvider()


def make_request(model="gpt-image-1", orientation="square", prompt="a lighthouse at dusk", **fields):
    width, height = PROVIDER.size_for(model, orientation)
    return ImageRequest(prompt, model, width, height, **fields)


def generate(server, request=None, *, provider=PROVIDER, key=None, timeout=(2, 10)):
    credentials = Credentials(key or server.api_key, server.base_url)
    return provider.generate(request or make_request(), credentials, timeout=timeout)


def failure(server, request=None, **kwargs) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        generate(server, request, **kwargs)
    return caught.value


# -- request shapes ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("orientation", ["square", "landscape", "portrait"])
def test_dall_e_2_asks_for_a_1024_square_url_in_every_orientation(fake_openai, orientation):
    image = generate(fake_openai, make_request("dall-e-2", orientation))
    assert fake_openai.calls[0].json == {"model": "dall-e-2", "prompt": "a lighthouse at dusk", "n": 1,
                                         "size": "1024x1024"}
    assert image.url.startswith(fake_openai.origin + "/files/") and image.data is None
    assert image.cost == Decimal("0.020")
    downloaded = requests.get(image.url, timeout=5)
    assert Image.open(io.BytesIO(downloaded.content)).size == (1024, 1024)


@pytest.mark.parametrize("orientation, size, quality, cost", [
    ("square", "1024x1024", "standard", "0.040"), ("square", "1024x1024", "hd", "0.080"),
    ("landscape", "1792x1024", "standard", "0.080"), ("portrait", "1024x1792", "hd", "0.120"),
])
def test_dall_e_3_sends_its_own_sizes_quality_and_style(fake_openai, orientation, size, quality, cost):
    request = make_request("dall-e-3", orientation, options={"quality": quality, "style": "natural"})
    image = generate(fake_openai, request)
    assert fake_openai.calls[0].json == {"model": "dall-e-3", "prompt": "a lighthouse at dusk", "n": 1,
                                         "size": size, "quality": quality, "style": "natural"}
    assert image.revised_prompt == "A detailed rendering of: a lighthouse at dusk"
    assert image.cost == Decimal(cost)


@pytest.mark.parametrize("model", ["gpt-image-1", "gpt-image-1-mini"])
@pytest.mark.parametrize("output_format, sent, pil_format", [("png", "png", "PNG"), ("jpg", "jpeg", "JPEG"),
                                                             ("webp", "webp", "WEBP")])
def test_gpt_image_models_get_output_format_and_quality_and_answer_bytes(fake_openai, model, output_format, sent,
                                                                         pil_format):
    image = generate(fake_openai, make_request(model, "landscape", output_format=output_format))
    body = fake_openai.calls[0].json
    assert body == {"model": model, "prompt": "a lighthouse at dusk", "n": 1, "size": "1536x1024",
                    "quality": "medium", "output_format": sent}
    assert "response_format" not in body
    picture = Image.open(io.BytesIO(image.data))
    assert (picture.format, picture.size) == (pil_format, (1536, 1024))
    assert image.url is None and image.download_hosts == ()


@pytest.mark.parametrize("model, cost", [("gpt-image-1", "0.04224"), ("gpt-image-1-mini", "0.008448")])
def test_gpt_image_cost_comes_from_the_output_tokens_in_usage(fake_openai, model, cost):
    image = generate(fake_openai, make_request(model, options={"quality": "medium"}))
    assert image.cost == Decimal(cost)  # 1056 output tokens at $40 (mini: $8) per million


def test_gpt_image_cost_falls_back_to_the_price_table_without_usage(fake_openai):
    answer = b'{"created": 1, "data": [{"b64_json": "' + base64.b64encode(b"\x89PNG...") + b'"}]}'
    fake_openai.script(Fault("raw", status=200, body=answer, content_type="application/json"))
    image = generate(fake_openai, make_request("gpt-image-1", "portrait", options={"quality": "high"}))
    assert image.cost == Decimal("0.25") and image.data == b"\x89PNG..."


@pytest.mark.parametrize("model, orientation, options, price", [
    ("dall-e-2", "landscape", {}, "0.020"), ("dall-e-3", "square", {}, "0.040"),
    ("dall-e-3", "landscape", {"quality": "hd"}, "0.120"), ("gpt-image-1", "square", {"quality": "low"}, "0.011"),
    ("gpt-image-1", "portrait", {}, "0.063"), ("gpt-image-1-mini", "landscape", {"quality": "high"}, "0.052"),
    ("gpt-image-1", "square", {"quality": "auto"}, "0.167"),
])
def test_estimate_cost_follows_the_price_table(model, orientation, options, price):
    assert PROVIDER.estimate_cost(make_request(model, orientation, options=options)) == Decimal(price)


def test_a_negative_prompt_is_never_sent(fake_openai):
    generate(fake_openai, make_request("dall-e-3", negative_prompt="blurry, text"))
    assert "blurry" not in fake_openai.calls[0].body.decode()
    assert not any(spec.supports_negative_prompt for spec in PROVIDER.models.values())


def test_a_base_url_with_a_trailing_slash_still_works(fake_openai):
    credentials = Credentials(fake_openai.api_key, fake_openai.base_url + "/")
    assert PROVIDER.generate(make_request(), credentials, timeout=(2, 10)).data
    assert fake_openai.calls[0].path == "/v1/images/generations"


# -- what is refused before any call -------------------------------------------------------------------------

@pytest.mark.parametrize("request_, code", [
    (ImageRequest("a cat", "dall-e-3", 1536, 1024), "invalid_size"),
    (ImageRequest("x" * 1001, "dall-e-2", 1024, 1024), "prompt_too_long"),
    (ImageRequest("a cat", "dall-e-4", 1024, 1024), "invalid_model"),
    (make_request("gpt-image-1", options={"quality": "hd"}), "invalid_quality"),
    (make_request("dall-e-3", options={"style": "cartoon"}), "invalid_style"),
    (make_request("gpt-image-1", output_format="gif"), "invalid_output_format"),
])
def test_an_invalid_request_is_refused_before_any_call(fake_openai, request_, code):
    error = failure(fake_openai, request_)
    assert (error.permanent, error.code, fake_openai.call_count) == (True, code, 0)


def test_a_missing_key_is_refused_before_any_call(fake_openai):
    with pytest.raises(ProviderError, match="needs an API key") as caught:
        PROVIDER.generate(make_request(), Credentials(None, fake_openai.base_url), timeout=(2, 10))
    assert caught.value.permanent and fake_openai.call_count == 0


def test_the_fake_refuses_what_the_real_api_refuses(fake_openai):
    def post(body):
        return requests.post(fake_openai.base_url + "/images/generations", json=body, timeout=5,
                             headers={"Authorization": f"Bearer {fake_openai.api_key}"})

    gpt = post({"model": "gpt-image-1", "prompt": "a cat", "response_format": "b64_json"})
    assert (gpt.status_code, gpt.json()["error"]["code"]) == (400, "unknown_parameter")
    many = post({"model": "dall-e-3", "prompt": "a cat", "n": 2})
    assert many.status_code == 400 and "n=1" in many.json()["error"]["message"]
    size = post({"model": "dall-e-3", "prompt": "a cat", "size": "1536x1024"})
    assert (size.status_code, size.json()["error"]["code"]) == (400, "invalid_size")
    assert fake_openai.call_count == 3


# -- error mapping -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("fault, message, permanent", [
    ("unauthorized", "OpenAI: invalid API key", True),
    ("insufficient_quota", "OpenAI: quota exhausted (insufficient_quota) — add credit to the account", True),
    ("content_policy", "OpenAI rejected the prompt under its content policy: Your request was rejected", True),
    ("moderation_blocked", "OpenAI's moderation blocked the image: Your request was rejected by the safety", True),
    (Fault("bad_request", message="Invalid 'quality'."), "OpenAI rejected the request: Invalid 'quality'.", True),
    (Fault("bad_request", status=404, message="No such model"), "OpenAI rejected the request (HTTP 404)", True),
    ("no_image", "OpenAI answered without an image", True),
    ("invalid_base64", "OpenAI returned an image that is not valid base64", True),
    (Fault("raw", status=200, body=b"<html>gateway</html>"), "OpenAI answered without an image", True),
    ("rate_limit", "OpenAI rate limit: Rate limit exceeded for images per minute", False),
    (Fault("raw", status=429, body=b"error code: 1015"), "OpenAI rate limit: error code: 1015", False),
    (Fault("server_error", status=500), "OpenAI could not make the image now (HTTP 500)", False),
    (Fault("server_error", status=502), "OpenAI could not make the image now (HTTP 502)", False),
    (Fault("server_error", status=503), "OpenAI could not make the image now (HTTP 503)", False),
    (Fault("raw", status=408, body=b"Request Timeout"), "OpenAI could not make the image now (HTTP 408)", False),
    (Fault("raw", status=409, body=b"{}"), "OpenAI could not make the image now (HTTP 409)", False),
])
def test_each_error_answer_maps_to_a_readable_provider_error(fake_openai, fault, message, permanent):
    fake_openai.script(fault)
    error = failure(fake_openai)
    assert error.message.startswith(message) and str(error) == error.message
    assert error.permanent is permanent


def test_a_wrong_key_is_a_permanent_invalid_key_error(fake_openai):
    error = failure(fake_openai, key="sk-wrong-key-000000")
    assert (error.message, error.permanent, error.status) == ("OpenAI: invalid API key", True, 401)


def test_a_429_carries_the_retry_after_it_was_given(fake_openai):
    fake_openai.script(Fault("rate_limit", retry_after="7"), Fault("raw", status=429, body=b"slow down",
                                                                   retry_after_ms="1500"))
    assert failure(fake_openai).retry_after == 7.0
    assert failure(fake_openai).retry_after == 1.5


# -- URL answers -------------------------------------------------------------------------------------------

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


def test_a_self_hosted_server_is_allowed_by_host_and_port(fake_openai):
    image = generate(fake_openai, make_request("dall-e-3"))
    assert image.download_hosts == (f"127.0.0.1:{fake_openai.origin.rsplit(':', 1)[1]}",)


def test_a_provider_url_stops_working_once_expired(fake_openai):
    first = generate(fake_openai, make_request("dall-e-3"))
    assert requests.get(first.url, timeout=5).status_code == 200
    fake_openai.expire(first.url)
    assert requests.get(first.url, timeout=5).status_code == 404
    fake_openai.script("expired_url")
    assert requests.get(generate(fake_openai, make_request("dall-e-2")).url, timeout=5).status_code == 404


@pytest.mark.parametrize("fault, start", [(Fault("non_image", image="svg"), b"<svg"),
                                          (Fault("non_image", image="pdf"), b"%PDF"), ("truncated_image", b"\x89PNG")])
def test_wrong_image_bytes_are_passed_on_for_storage_to_judge(fake_openai, fault, start):
    fake_openai.script(fault)
    assert generate(fake_openai).data.startswith(start)


# -- transport -----------------------------------------------------------------------------------------------

def test_a_server_that_does_not_answer_in_time_is_a_transient_timeout(fake_openai):
    fake_openai.script(Fault("timeout", delay=5))
    started = time.monotonic()
    error = failure(fake_openai, timeout=(2, 0.3))
    assert error.message == "OpenAI did not answer within 0.3 s" and not error.permanent
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
    assert error.message == "OpenAI did not finish its answer within 0.5 s" and not error.permanent
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
    generate(fake_openai, make_request("dall-e-3"))
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
