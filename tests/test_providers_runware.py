import io
import threading
import time
import uuid
from decimal import Decimal

import pytest
import requests
from PIL import Image

from jobs.providers.base import Credentials, ImageRequest, ProviderError
from jobs.providers.catalog import PRESETS
from jobs.providers.runware import RunwareProvider
from tests.fakes import Fault

PROVIDER = RunwareProvider()


def make_request(model="runware:100@1", size=(1344, 768), prompt="a lighthouse at dusk", **fields):
    return ImageRequest(prompt, model, *size, **fields)


def generate(server, request=None, *, key=None, timeout=(2, 10)):
    return PROVIDER.generate(request or make_request(), Credentials(key or server.api_key, server.base_url),
                             timeout=timeout)


def failure(server, request=None, **kwargs) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        generate(server, request, **kwargs)
    return caught.value


@pytest.mark.parametrize("output_format, sent, pil_format", [("webp", "WEBP", "WEBP"), ("jpg", "JPG", "JPEG"),
                                                             ("png", "PNG", "PNG")])
def test_it_sends_one_inference_task_after_the_authentication_task(fake_runware, output_format, sent, pil_format):
    compression = {"webp": 85, "jpg": 88}.get(output_format)
    image = generate(fake_runware, make_request(output_format=output_format, output_compression=compression))
    auth, task = fake_runware.calls[0].json
    assert auth == {"taskType": "authentication", "apiKey": fake_runware.api_key}
    assert uuid.UUID(task.pop("taskUUID")).version == 4
    assert task == {"taskType": "imageInference", "positivePrompt": "a lighthouse at dusk", "model": "runware:100@1",
                    "width": 1344, "height": 768, "numberResults": 1, "outputType": "URL", "outputFormat": sent,
                    "includeCost": True, "safety": {"checkContent": True},
                    **({"outputQuality": compression} if compression else {})}
    assert fake_runware.deprecated_fields == []  # checkNsfw is deprecated in favour of safety
    assert fake_runware.calls[0].headers["Authorization"] == f"Bearer {fake_runware.api_key}"
    picture = Image.open(io.BytesIO(requests.get(image.url, timeout=5).content))
    assert (picture.format, picture.size) == (pil_format, (1344, 768))


@pytest.mark.parametrize("negative, sent", [(None, False), ("", False), ("   ", False), ("blurry, text", True)])
def test_a_negative_prompt_is_sent_only_when_given(fake_runware, negative, sent):
    generate(fake_runware, make_request(negative_prompt=negative))
    task = fake_runware.calls[0].json[1]
    assert ("negativePrompt" in task) is sent
    if sent:
        assert task["negativePrompt"] == "blurry, text"


@pytest.mark.parametrize("model", ["runware:100@1", "runware:101@1", "runware:400@1", "runware:97@1"])
def test_every_model_and_preset_uses_a_size_runware_accepts(fake_runware, model):
    rule = PROVIDER.model_spec(model).size_rule
    for preset in PRESETS:
        width, height = rule.preset(preset)
        assert all(side % 64 == 0 and 512 <= side <= 2048 for side in (width, height))
        assert generate(fake_runware, make_request(model, (width, height))).url
    assert PROVIDER.model_spec(model).supports_negative_prompt


@pytest.mark.parametrize("size, says", [((1000, 768), "multiples of 64"), ((2112, 1024), "from 512 to 2048")])
def test_a_size_outside_the_flux_rule_is_refused_before_any_call(fake_runware, size, says):
    error = failure(fake_runware, make_request(size=size))
    assert says in error.message and error.code == "invalid_size" and fake_runware.call_count == 0


def test_another_air_id_is_sent_as_typed(fake_runware):
    fake_runware.extra_models["civitai:4384@128713"] = 0.002
    image = generate(fake_runware, make_request("civitai:4384@128713"))
    assert fake_runware.calls[0].json[1]["model"] == "civitai:4384@128713" and image.cost == Decimal("0.002")
    error = failure(fake_runware, make_request("not an air id"))
    assert error.code == "invalid_model" and fake_runware.call_count == 1


def test_the_cost_and_the_download_host_come_from_the_answer(fake_runware):
    image = generate(fake_runware)
    assert image.cost == Decimal("0.0013")  # exact, not the float's binary expansion
    assert image.download_hosts == (fake_runware.origin.removeprefix("http://"),)


def test_the_answer_is_matched_to_our_task_by_its_uuid(fake_runware):
    fake_runware.script("wrong_task")
    error = failure(fake_runware)
    assert (error.message, error.permanent) == ("Runware answered without an image", True)


def test_the_fake_refuses_sizes_runware_refuses(fake_runware):
    task = {"taskType": "imageInference", "taskUUID": str(uuid.uuid4()), "positivePrompt": "a cat",
            "model": "runware:100@1", "width": 1000, "height": 768}
    answer = requests.post(fake_runware.base_url, timeout=5, json=[
        {"taskType": "authentication", "apiKey": fake_runware.api_key}, task])
    assert answer.status_code == 400 and answer.json()["errors"][0]["code"] == "invalidWidth"


@pytest.mark.parametrize("fault, message, permanent", [
    ("unauthorized", "Runware rejected the API key: check the key in Settings → Image generation.", True),
    ("insufficient_balance", "Runware: the account behind this API key has not enough credit (insufficientCredits). "
                             "Add credit in Runware's dashboard, then retry.", True),
    ("forbidden", "Runware refused this API key (forbidden): This API key cannot use this model.", True),
    ("content_policy", "Runware's safety check refused the prompt or the image (contentPolicyViolation): The prompt "
                       "violates the content policy. Edit the prompt and generate it again.", True),
    ("nsfw_detected", "Runware's safety check refused the prompt or the image (nsfwContentDetected)", True),
    ("prompt_blocked", "Runware's safety check refused the prompt or the image (promptBlocked)", True),
    (Fault("unknown_code", status=400), "Runware rejected the request (someNewCode2026): A new kind of failure.",
     True),
    (Fault("unknown_code", status=503), "Runware could not make the image now (HTTP 503): A new kind", False),
    (Fault("bad_request", message="Unsupported model."), "Runware rejected the request (invalidParameter): "
                                                         "Unsupported model.", True),
    ("error_in_200", "Runware rejected the request (inferenceFailed): The image could not be generated.", True),
    ("no_image", "Runware answered without an image", True),
    ("invalid_base64", "Runware returned an image that is not valid base64", True),
    ("rate_limit", "Runware could not make the image now (HTTP 429): Too many requests.", False),
    (Fault("server_error", status=500), "Runware could not make the image now (HTTP 500)", False),
    (Fault("server_error", status=503), "Runware could not make the image now (HTTP 503)", False),
    (Fault("raw", status=502, body=b"<html>Bad gateway</html>"), "Runware could not make the image now (HTTP 502)",
     False),
])
def test_each_error_answer_maps_to_a_readable_provider_error(fake_runware, fault, message, permanent):
    fake_runware.script(fault)
    error = failure(fake_runware)
    assert error.message.startswith(message) and error.permanent is permanent, error.message
    # our taskUUID is the id Runware's support asks for
    assert error.request_id == fake_runware.calls[0].json[1]["taskUUID"]
    assert error.blocks_key is (fault == "insufficient_balance")


def test_a_wrong_key_is_a_permanent_invalid_key_error(fake_runware):
    error = failure(fake_runware, key="rw-wrong-key-0000")
    assert (error.permanent, error.status) == (True, 401) and error.message.startswith("Runware rejected the API key")


def test_an_invalid_api_key_code_means_an_invalid_key_whatever_the_status():
    from jobs.providers.http import Answer

    body = b'{"errors": [{"code": "invalidApiKey", "message": "Invalid key", "taskType": "authentication"}]}'
    error = PROVIDER.error_for(Answer(400, {}, body), "k")
    assert error.permanent and error.message.startswith("Runware rejected the API key")


def test_a_429_carries_the_retry_after_it_was_given(fake_runware):
    fake_runware.script(Fault("rate_limit", retry_after="4"))
    error = failure(fake_runware)
    assert (error.retry_after, error.permanent) == (4.0, False)


@pytest.mark.parametrize("url, allowed", [
    ("https://im.runware.ai/image/ws/0.5/ii/abc.jpg", ("im.runware.ai", "api.runware.ai:443")),
    ("https://im.runware.ai:9000/image/abc.jpg", ("im.runware.ai", "api.runware.ai:443")),
    ("http://im.runware.ai/image/abc.jpg", ("api.runware.ai:443",)),
    ("https://im.runware.ai.evil.test/abc.jpg", ("api.runware.ai:443",)),
    ("https://elsewhere.test/abc.jpg", ("api.runware.ai:443",)),
])
def test_a_url_may_only_be_downloaded_from_runwares_cdn_or_the_server_asked(url, allowed):
    assert PROVIDER.download_hosts(url, "https://api.runware.ai/v1") == allowed


def test_the_key_is_sent_only_in_the_header_and_the_authentication_task(fake_runware):
    generate(fake_runware, make_request(negative_prompt="blurry"))
    call, key = fake_runware.calls[0], fake_runware.api_key
    assert [name for name, value in call.headers.items() if key in value] == ["Authorization"]
    auth, task = call.json
    assert auth["apiKey"] == key and key not in str(task) and key not in call.path


def test_the_key_never_appears_in_an_error(fake_runware):
    fake_runware.script(Fault("bad_request", message=f"cannot use {fake_runware.api_key}"))
    error = failure(fake_runware)
    assert fake_runware.api_key not in str(error) and fake_runware.api_key not in repr(error)
    assert error.message == "Runware rejected the request (invalidParameter): cannot use [key]"


def test_under_load_the_fake_makes_calls_wait_rather_than_refusing_them(fake_runware):
    fake_runware.set_load(latency=0.2, max_concurrent=1)
    results, started = [], time.monotonic()
    threads = [threading.Thread(target=lambda: results.append(generate(fake_runware))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 3 and time.monotonic() - started >= 0.6
    assert (fake_runware.load.peak, fake_runware.load.rejected) == (1, 0)
