import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from jobs.providers import http
from jobs.providers.base import Credentials, ImageRequest, ProviderError
from jobs.providers.http import CallTimeout, call_with_retries, retry_after_seconds
from jobs.providers.openai import OpenAIProvider
from jobs.providers.runware import RunwareProvider
from tests.conftest import wait_for
from tests.fakes import Fault


class Sleeps(list):
    """An injected sleep that records the delays instead of waiting."""

    def __call__(self, seconds):
        self.append(seconds)


def generate_with_retries(server, provider=None, prompt="a lighthouse at dusk", timeout=(2, 10), **options):
    provider = provider or OpenAIProvider()
    model = next(iter(provider.models)) if isinstance(provider, RunwareProvider) else "gpt-image-2"
    request = ImageRequest(prompt, model, 1024, 1024)
    credentials = Credentials(server.api_key, server.base_url)
    return call_with_retries(lambda: provider.generate(request, credentials, timeout=timeout), **options)


# -- retry-after ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fault, delay", [
    (Fault("rate_limit", retry_after="2"), 2.0),
    (Fault("rate_limit", retry_after_ms="1500"), 1.5),
    (Fault("rate_limit", retry_after="9", retry_after_ms="250"), 0.25),
    (Fault("raw", status=429, body=b"error code: 1015", retry_after="3"), 3.0),
    (Fault("server_error", status=503, retry_after="5"), 5.0),
])
def test_it_waits_out_a_429_with_retry_after(fake_openai, fault, delay):
    fake_openai.script(fault)
    sleeps = Sleeps()
    assert generate_with_retries(fake_openai, sleep=sleeps).data
    assert sleeps == [delay] and fake_openai.call_count == 2


def test_it_waits_out_a_retry_after_given_as_an_http_date(fake_openai):
    when = datetime.now(UTC) + timedelta(seconds=30)
    fake_openai.script(Fault("rate_limit", retry_after=format_datetime(when, usegmt=True)))
    sleeps = Sleeps()
    generate_with_retries(fake_openai, sleep=sleeps)
    assert len(sleeps) == 1 and 28 <= sleeps[0] <= 30


def test_it_waits_out_a_runware_429_too(fake_runware):
    fake_runware.script(Fault("rate_limit", retry_after="2"), Fault("server_error", status=502, retry_after="1"))
    sleeps = Sleeps()
    assert generate_with_retries(fake_runware, RunwareProvider(), sleep=sleeps).url
    assert sleeps == [2.0, 1.0] and fake_runware.call_count == 3


def test_it_gives_up_at_once_when_retry_after_is_beyond_the_cap(fake_openai):
    fake_openai.script(Fault("rate_limit", retry_after="300"))
    sleeps = Sleeps()
    with pytest.raises(ProviderError) as caught:
        generate_with_retries(fake_openai, sleep=sleeps, max_retry_after=120)
    assert caught.value.retry_after == 300 and sleeps == [] and fake_openai.call_count == 1


def test_it_really_waits_out_a_one_second_retry_after(fake_openai):
    fake_openai.script(Fault("rate_limit", retry_after="1"))
    started = time.monotonic()
    assert generate_with_retries(fake_openai).data
    assert time.monotonic() - started >= 1.0 and fake_openai.call_count == 2


@pytest.mark.parametrize("headers, seconds", [
    ({"retry-after": "5"}, 5.0), ({"retry-after": "0.5"}, 0.5), ({"retry-after-ms": "250"}, 0.25),
    ({"retry-after-ms": "250", "retry-after": "9"}, 0.25), ({"retry-after-ms": "soon", "retry-after": "9"}, 9.0),
    ({"retry-after": "Wed, 21 Oct 2026 07:28:10 GMT"}, 10.0), ({"retry-after": "Wed, 21 Oct 2026 07:27:00 GMT"}, 0.0),
    ({"retry-after": "Wed, 21 Oct 2026 07:28:10 -0000"}, 10.0), ({"retry-after": "-3"}, 0.0),
    ({"retry-after": "tomorrow"}, None), ({}, None),
])
def test_retry_after_is_read_in_all_its_forms(headers, seconds):
    now = datetime(2026, 10, 21, 7, 28, 0, tzinfo=UTC)
    assert retry_after_seconds(headers, now=now) == seconds


# -- backoff -------------------------------------------------------------------------------------------------

def failing(times, error=None):
    """An attempt function that fails `times` times, then answers "done"."""
    calls = []

    def attempt():
        calls.append(1)
        if len(calls) <= times:
            raise error or ProviderError("OpenAI could not make the image now (HTTP 500)", permanent=False)
        return "done"
    attempt.calls = calls
    return attempt


def test_it_backs_off_exponentially_up_to_the_cap_without_retry_after(monkeypatch):
    monkeypatch.setattr(http.random, "uniform", lambda low, high: high)  # the top of each jitter range
    sleeps = Sleeps()
    assert call_with_retries(failing(6), max_attempts=7, sleep=sleeps) == "done"
    assert sleeps == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]


def test_the_backoff_is_fully_jittered():
    sleeps = Sleeps()
    for _ in range(50):
        call_with_retries(failing(2), sleep=sleeps)
    firsts, seconds = sleeps[0::2], sleeps[1::2]
    assert all(0 <= d <= 0.5 for d in firsts) and all(0 <= d <= 1.0 for d in seconds)
    assert len(set(sleeps)) > 90  # random, not a fixed schedule that makes workers retry in step


def test_it_retries_server_errors_and_broken_connections(fake_openai):
    fake_openai.script(Fault("server_error", status=502), "reset", "cut_body")
    sleeps = Sleeps()
    assert generate_with_retries(fake_openai, sleep=sleeps, max_attempts=4).data
    assert len(sleeps) == 3 and fake_openai.call_count == 4


def test_it_never_retries_a_read_timeout_the_provider_may_have_billed(fake_openai):
    fake_openai.script(Fault("timeout", delay=3))
    sleeps = Sleeps()
    with pytest.raises(ProviderError) as caught:
        generate_with_retries(fake_openai, sleep=sleeps, timeout=(2, 0.3))
    assert caught.value.maybe_charged and sleeps == [] and fake_openai.call_count == 1


def test_it_raises_the_last_error_after_max_attempts(fake_openai):
    fake_openai.set_fault(Fault("server_error", status=503))
    sleeps = Sleeps()
    with pytest.raises(ProviderError, match=r"HTTP 503") as caught:
        generate_with_retries(fake_openai, sleep=sleeps)
    assert not caught.value.permanent and len(sleeps) == 2 and fake_openai.call_count == 3


@pytest.mark.parametrize("fault", ["moderation_blocked", "insufficient_quota", "billing_hard_limit", "model_not_found",
                                   "permission_denied", "unauthorized", "invalid_base64", "no_image"])
def test_it_does_not_retry_a_permanent_error(fake_openai, fault):
    fake_openai.script(fault, fault)
    sleeps = Sleeps()
    with pytest.raises(ProviderError) as caught:
        generate_with_retries(fake_openai, sleep=sleeps)
    assert caught.value.permanent and sleeps == [] and fake_openai.call_count == 1


def test_it_does_not_retry_other_exceptions():
    attempt = failing(1, error=ValueError("a bug, not a provider answer"))
    with pytest.raises(ValueError):
        call_with_retries(attempt, sleep=Sleeps())
    assert len(attempt.calls) == 1


def test_on_retry_hears_each_retry_before_the_wait():
    heard, sleeps = [], Sleeps()
    call_with_retries(failing(2, ProviderError("busy", permanent=False, retry_after=3)), sleep=sleeps,
                      on_retry=lambda error, delay: heard.append((error.message, delay, len(sleeps))))
    assert heard == [("busy", 3, 0), ("busy", 3, 1)]


def test_each_image_is_one_call_when_nothing_fails(fake_openai):
    fake_openai.on_prompt("forbidden", "moderation_blocked")
    for prompt in ("a cat", "a dog", "a forbidden thing", "a bird"):
        try:
            generate_with_retries(fake_openai, prompt=prompt, sleep=Sleeps())
        except ProviderError as error:
            assert error.permanent and "safety system refused" in error.message
    assert fake_openai.prompt_counts() == {"a cat": 1, "a dog": 1, "a forbidden thing": 1, "a bird": 1}


def test_faults_can_be_scripted_for_one_prompt_only(fake_openai):
    fake_openai.script("rate_limit", times=2, prompt="dog")
    sleeps = Sleeps()
    generate_with_retries(fake_openai, prompt="a cat", sleep=sleeps)
    generate_with_retries(fake_openai, prompt="a dog", sleep=sleeps)
    assert fake_openai.prompt_counts() == {"a cat": 1, "a dog": 3} and len(sleeps) == 2


def test_the_fake_refuses_calls_beyond_its_rate_and_concurrency(fake_openai):
    fake_openai.set_load(latency=0, per_minute=2)
    sleeps = Sleeps()
    generate_with_retries(fake_openai, sleep=sleeps)
    generate_with_retries(fake_openai, sleep=sleeps)
    with pytest.raises(ProviderError) as caught:
        generate_with_retries(fake_openai, sleep=sleeps, max_retry_after=30)
    assert 55 <= caught.value.retry_after <= 60 and fake_openai.load.rejected == 1


def test_the_fake_refuses_calls_beyond_its_concurrency(fake_openai):
    fake_openai.set_load(latency=0.3, max_concurrent=1)
    outcomes = []

    def one_call():
        try:
            outcomes.append(generate_with_retries(fake_openai, max_attempts=1))
        except ProviderError as error:
            outcomes.append(error)

    threads = [threading.Thread(target=one_call) for _ in range(2)]
    for thread in threads:
        thread.start()
        time.sleep(0.05)
    for thread in threads:
        thread.join()
    errors = [o for o in outcomes if isinstance(o, ProviderError)]
    assert len(outcomes) == 2 and len(errors) == 1 and errors[0].retry_after == 1.0
    assert (fake_openai.load.peak, fake_openai.load.rejected) == (1, 1)


# -- the whole call's deadline -------------------------------------------------------------------------------

def calls_running() -> set:
    return {t for t in threading.enumerate() if t.name.startswith("provider call")}


def failing_slowly(server, timeout, fault, provider=None):
    """The ProviderError of one generate call against `fault`, and the seconds it took."""
    server.script(fault)
    sleeps, started = Sleeps(), time.monotonic()
    with pytest.raises(ProviderError) as caught:
        generate_with_retries(server, provider, timeout=timeout, sleep=sleeps)
    assert sleeps == [] and server.call_count == 1  # never retried: it may have been billed
    return caught.value, time.monotonic() - started


@pytest.mark.parametrize("timeout, limit", [(CallTimeout(2, 10, deadline=1), "1 s"),
                                            ((2, 1.5), "1.5 s")])  # a plain tuple: its read timeout is the deadline
def test_an_answer_trickling_a_byte_a_second_fails_at_the_deadline(fake_openai, timeout, limit):
    # Every read gets its byte well within the read timeout: only the deadline can end this call.
    before = calls_running()
    error, took = failing_slowly(fake_openai, timeout, Fault("trickle"))
    assert f"OpenAI did not finish its answer within {limit}; the provider may still have " \
           "made the image" in error.message
    assert error.permanent and error.maybe_charged and error.status == 200
    assert took < float(limit.split()[0]) + 0.5
    # The call's connection is shut, not left reading on for nobody: its thread ends too.
    wait_for(lambda: not calls_running() - before, timeout=2, message="the call's thread to end")


def test_a_runware_answer_trickling_fails_at_the_deadline_too(fake_runware):
    error, took = failing_slowly(fake_runware, CallTimeout(2, 10, deadline=1), Fault("trickle", interval=0.5),
                                 RunwareProvider())
    assert "Runware did not finish its answer within 1 s" in error.message
    assert error.permanent and error.maybe_charged and took < 1.5


def test_waiting_for_the_headers_counts_toward_the_deadline(fake_openai):
    error, took = failing_slowly(fake_openai, CallTimeout(2, 10, deadline=1), Fault("timeout", delay=5))
    assert "OpenAI did not answer within 1 s; the provider may still have made the image" in error.message
    assert error.permanent and error.maybe_charged and 1 <= took < 1.5


def test_trickled_headers_do_not_outlast_the_deadline_either(fake_openai):
    # The status line itself arrives a byte a second, so no timeout of the call's own ever fires: its
    # caller stops waiting at the deadline all the same.
    error, took = failing_slowly(fake_openai, CallTimeout(2, 10, deadline=1), Fault("trickle", trickle_headers=True))
    assert "OpenAI did not answer within 1 s; the provider may still have made the image" in error.message
    assert error.permanent and error.maybe_charged and 1 <= took < 1.5


def test_an_answer_in_many_small_pieces_within_the_deadline_is_whole(fake_openai):
    # ~21 KB sent a byte at a time, as fast as the fake can: read as it arrives, and put back together.
    fake_openai.script(Fault("trickle", interval=0))
    image = generate_with_retries(fake_openai, timeout=CallTimeout(2, 10, deadline=20), sleep=Sleeps())
    assert image.data.startswith(b"\x89PNG") and fake_openai.call_count == 1


def test_a_slow_answer_within_the_deadline_succeeds(fake_openai):
    fake_openai.script(Fault("slow", delay=0.5))
    assert generate_with_retries(fake_openai, timeout=CallTimeout(2, 10, deadline=3), sleep=Sleeps()).data


@pytest.mark.parametrize("url, key", [("https://api.openai.com/v1", "api.openai.com:443"),
                                      ("http://sd.local/v1", "sd.local:80"),
                                      ("http://127.0.0.1:7860", "127.0.0.1:7860"),
                                      ("http://[::1]:8080/v1", "[::1]:8080")])
def test_a_base_url_is_allowed_by_its_exact_host_and_port(url, key):
    assert http.host_key(url) == key
