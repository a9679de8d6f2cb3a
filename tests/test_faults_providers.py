"""Provider faults through a real worker: every image ends `failed` with a reason staff can act on,
nothing is retried that must not be, and the worker survives."""

import json
import time

import pytest
from PIL import Image

from tests import factories, ledger
from tests.api_helpers import ApiClient
from tests.canary import Canary
from tests.conftest import WorkerProcess
from tests.fakes.faults import Fault
from tests.fakes.openai_server import FakeOpenAICompatible
from tests.flow import generate, new_article, use_provider, wait_done

pytestmark = pytest.mark.worker


QUEUE = "test-provider-faults"
CALL_DEADLINE = 3  # seconds: the whole of one provider call, for this module's worker


@pytest.fixture(scope="module")
def fast_timeout_worker(redis_conn, database):
    """A worker of this module's own queue whose provider read timeout is 2 s and whole-call deadline
    3 s, so timeouts, endless bodies and trickling answers end quickly."""
    worker = WorkerProcess("provider-faults", extra_env={"PROVIDER_READ_TIMEOUT": "2", "RQ_QUEUE": QUEUE,
                                                          "PROVIDER_CALL_DEADLINE": str(CALL_DEADLINE)})
    yield worker
    worker.stop()


@pytest.fixture
def api(client, personas, fast_timeout_worker, redis_conn, monkeypatch):
    monkeypatch.setenv("RQ_QUEUE", QUEUE)
    return ApiClient(client, personas.owner)


def one_image_fails(api, fake, model, fault, reason, *, calls=None, provider="openai"):
    use_provider(api, provider, model, fake)
    fake.set_fault(fault)
    ids = new_article(("A picture that will not arrive",))
    final = wait_done(api, generate(api, ids), timeout=90)
    image = final["images"][0]
    assert image["status"] == "failed", image
    assert reason in image["error"], image["error"]
    assert "Traceback" not in image["error"] and fake.api_key not in image["error"]
    if calls is not None:
        assert fake.call_count == calls
    ledger.fault(f"provider: {fault.kind if isinstance(fault, Fault) else fault} ({model})")
    ledger.settle(factories.images([image["id"]]))  # what the database holds, not what was asserted
    return image


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_retried_then_fail_with_the_reason(api, fake_openai, fast_timeout_worker, status):
    one_image_fails(api, fake_openai, "gpt-image-2", Fault("server_error", status=status), "OpenAI", calls=3)
    assert fast_timeout_worker.process.poll() is None


def test_a_read_timeout_is_not_retried_and_is_recorded_as_maybe_charged(api, fake_openai):
    # The provider had the request and may still finish and bill it: a blind retry could pay twice.
    image = one_image_fails(api, fake_openai, "gpt-image-2", Fault("timeout", delay=5),
                            "did not answer within 2 s; the provider may still have made the image", calls=1)
    assert factories.image(image["id"]).charge_uncertain is True


def test_a_body_that_never_ends_fails_within_the_deadline(api, fake_openai, fast_timeout_worker):
    one_image_fails(api, fake_openai, "gpt-image-2", Fault("never_ending_body"), "OpenAI")
    assert fast_timeout_worker.process.poll() is None


def test_an_answer_trickling_a_byte_a_second_fails_within_the_call_deadline(api, fake_openai, fast_timeout_worker):
    # Each byte comes well inside the 2 s read timeout: only the whole-call deadline ends the ~21 KB
    # answer (some six hours at this pace).
    started = time.monotonic()
    image = one_image_fails(api, fake_openai, "gpt-image-2", Fault("trickle"),
                            f"OpenAI did not finish its answer within {CALL_DEADLINE} s; "
                            "the provider may still have made the image", calls=1)
    assert time.monotonic() - started < CALL_DEADLINE + 10
    assert factories.image(image["id"]).charge_uncertain is True
    assert fast_timeout_worker.process.poll() is None


def test_a_trickling_answer_frees_its_slot_for_the_keys_other_images(api, fake_openai):
    # One call at a time for this key, and the trickling image goes first: the others can only be
    # made once the deadline has ended its call and freed the key's one slot.
    use_provider(api, "openai", "gpt-image-2", fake_openai, max_concurrent_calls=1)
    fake_openai.on_prompt("lighthouse", Fault("trickle"))
    ids = new_article(("A lighthouse at dusk", "Gulls over waves", "A sandy path through dunes"))
    final = wait_done(api, generate(api, ids), timeout=90)
    assert final["message"] == "2 images generated, 1 failed", final
    by_id = {i["id"]: i for i in final["images"]}
    assert by_id[ids[0]]["status"] == "failed"
    assert f"did not finish its answer within {CALL_DEADLINE} s" in by_id[ids[0]]["error"]
    assert by_id[ids[1]]["status"] == by_id[ids[2]]["status"] == "generated"
    trickled, *others = fake_openai.calls
    assert "lighthouse" in trickled.prompt and fake_openai.prompt_counts()[trickled.prompt] == 1  # never retried
    assert all(call.at - trickled.at >= CALL_DEADLINE - 0.5 for call in others), "the slot was not held"
    ledger.fault("provider: trickle beside healthy images (gpt-image-2)")
    lost, _ = ledger.settle(factories.images(ids))
    assert lost == 0


def _memory_kb(pid: int, field: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith(field))
    except (OSError, StopIteration):
        return None  # the process has just exited


def test_a_huge_body_is_cut_off_and_memory_stays_bounded(api, fake_openai, fast_timeout_worker):
    """The work-horse reads the body (the worker only forks it): its peak memory is sampled while it runs."""
    import threading

    peaks, done = [], threading.Event()

    def sample():
        while not done.is_set():
            horse = fast_timeout_worker.horse_pid()
            if horse and (peak := _memory_kb(horse, "VmHWM")):
                peaks.append(peak)
            done.wait(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    size = 400 * 1024 * 1024  # far more than the 64 MB an answer may have
    try:
        one_image_fails(api, fake_openai, "gpt-image-2", Fault("huge_body", size=size), "OpenAI")
    finally:
        done.set()
        sampler.join()
    worker_kb = _memory_kb(fast_timeout_worker.process.pid, "VmRSS")
    assert peaks, "no work-horse was seen"
    # The horse starts as a copy of the worker; what it added while reading stays near the 64 MB cap.
    assert max(peaks) - worker_kb < 200 * 1024, (max(peaks), worker_kb)


def test_a_reset_connection_is_retried_then_fails(api, fake_openai):
    one_image_fails(api, fake_openai, "gpt-image-2", "reset", "OpenAI", calls=3)


@pytest.mark.parametrize("fault, reason", [
    ("insufficient_quota", "no credit left (insufficient_quota). Add credit in OpenAI's billing settings, then retry"),
    ("billing_hard_limit", "(billing_hard_limit_reached). Add credit or raise the limit"),
    ("moderation_blocked", "safety system refused this image (violence). Edit the prompt"),
    ("model_not_found", "does not exist any more or this key cannot use it (model_not_found). Choose another model"),
])
def test_each_refusal_is_not_retried_and_says_what_to_do(api, fake_openai, fault, reason):
    one_image_fails(api, fake_openai, "gpt-image-2", fault, reason, calls=1)


def test_a_200_without_an_image(api, fake_openai):
    one_image_fails(api, fake_openai, "gpt-image-2", "no_image", "without an image", calls=1)


def test_invalid_base64(api, fake_openai):
    one_image_fails(api, fake_openai, "gpt-image-2", "invalid_base64", "base64")


@pytest.mark.parametrize("kind,reason", [("html", "HTML"), ("svg", "SVG"), ("pdf", "PDF")])
def test_non_image_bytes_are_refused_by_name(api, fake_openai, kind, reason):
    one_image_fails(api, fake_openai, "gpt-image-2", Fault("non_image", image=kind), reason)


def test_a_truncated_image(api, fake_openai):
    one_image_fails(api, fake_openai, "gpt-image-2", "truncated_image", "truncated")


def test_an_expired_url_from_a_compatible_server(api):
    with FakeOpenAICompatible() as server:
        one_image_fails(api, server, "flux-local", "expired_url", "expired", provider="openai_compatible")


def test_a_decompression_bomb(api, fake_openai, tmp_path, fast_timeout_worker):
    bomb = tmp_path / "bomb.png"
    Image.new("1", (9000, 9000)).save(bomb)  # 81 MP of zeros: a few KB on disk
    url = fake_openai.store_file("bomb.png", bomb.read_bytes(), "image/png")
    body = json.dumps({"created": 1, "data": [{"url": url}]}).encode()
    one_image_fails(api, fake_openai, "gpt-image-2",
                    Fault("raw", status=200, body=body, content_type="application/json"), "too large")
    assert fast_timeout_worker.process.poll() is None


@pytest.mark.parametrize("target", [
    "http://169.254.169.254/latest/meta-data/", "http://127.0.0.1:{canary}/x.png", "http://[::1]:{canary}/x.png",
    "http://10.0.0.5/x.png", "http://2130706433:{canary}/x.png", "file:///etc/passwd", "gopher://127.0.0.1:6379/_x",
    "https://evil.example/x.png",
])
def test_provider_urls_to_other_hosts_are_refused_before_connecting(api, fake_openai, target):
    canary = Canary()
    try:
        url = target.format(canary=canary.port)
        body = json.dumps({"created": 1, "data": [{"url": url}]}).encode()
        one_image_fails(api, fake_openai, "gpt-image-2", Fault("raw", status=200, body=body,
                                                            content_type="application/json"), "image")
        assert canary.hits == 0
        ledger.bad_input("provider URL to a forbidden target")
    finally:
        canary.close()
