"""`AICore`: the one place provider calls are made — retries, timeouts and latency records.

It is given the account's credentials by the function that prepared the call; the key lives only in
memory here and is never logged, returned or put in a job.
"""

import logging
import os
import time
import uuid
from decimal import Decimal

from redis.exceptions import RedisError

from jobs import latency
from jobs.limits import KeyLimiter, Limits
from jobs.providers import get_provider
from jobs.providers.base import Credentials, ImageRequest, ProviderError
from jobs.providers.http import CallTimeout, call_with_retries

log = logging.getLogger(__name__)

# Slow models take minutes; the connect timeout stays short so a dead host fails fast. The read
# timeout is the model's (the catalog's read_timeout) unless the operator sets one for all.
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = float(os.environ["PROVIDER_READ_TIMEOUT"]) if os.environ.get("PROVIDER_READ_TIMEOUT") else None
# The most one call may take in all (connecting, waiting, reading): a read timeout restarts on every packet,
# so an answer trickling in a byte a second would hold its image's slot for hours. By default the read
# timeout in effect (the catalog's per model), unless the operator sets one for all.
CALL_DEADLINE = float(os.environ["PROVIDER_CALL_DEADLINE"]) if os.environ.get("PROVIDER_CALL_DEADLINE") else None
MAX_ATTEMPTS = 3


class AICore:
    def __init__(self, credentials: Credentials | None = None, *, redis=None, limits: Limits | None = None,
                 on_call_start=None, on_call_end=None, sleep=time.sleep, timeout: tuple[float, float] | None = None,
                 max_attempts=MAX_ATTEMPTS):
        """`on_call_start()` runs when a call goes to the provider and `on_call_end()` when it has come
        back (answered or not), so progress shows waiting (a 429 pause, the per-minute window) and calling
        apart, and a job cut by a restart knows whether a request was out (which the provider may bill).
        How many calls run at once is RQ's concern (the image jobs' RateLimit); `limits` adds the
        per-minute window, 429 pauses and key blocks."""
        self.credentials = credentials or Credentials(api_key=None)
        self.redis = redis
        self.limiter = KeyLimiter(redis, limits, sleep=sleep) if redis is not None and limits else None
        self.on_call_start = on_call_start or (lambda: None)
        self.on_call_end = on_call_end or (lambda: None)
        self.timings: dict = {}
        self.sleep = sleep
        self.timeout = timeout
        self.max_attempts = max_attempts

    def expected_seconds(self, method: str, kwargs: dict) -> float | None:
        """The recent median latency of the provider and model a call will use, if known."""
        if self.redis is None or "provider" not in kwargs:
            return None
        return latency.median(self.redis, kwargs["provider"], kwargs.get("model", ""))

    def generate_image(self, prompt: str, provider: str, model: str, size: str, negative_prompt: str | None = None,
                       function_name: str | None = None, *, output_format: str = "png",
                       output_compression: int | None = None, quality: str | None = None,
                       background: str | None = None, end_user: str | None = None,
                       price_per_image: str | None = None) -> dict:
        """One image. Returns {'url' | 'bytes', 'cost', 'request_id', 'download_hosts', 'latency'};
        raises ProviderError (after retries for transient failures) with a message for staff."""
        backend = get_provider(provider)
        spec = backend.model_spec(model)
        width, height = (int(n) for n in size.lower().split("x"))
        if len(prompt) > spec.max_prompt_chars:
            raise ProviderError(f"The prompt is {len(prompt)} characters; {backend.label} {model} accepts at most "
                                f"{spec.max_prompt_chars}.", permanent=True, code="prompt_too_long")
        request = ImageRequest(
            prompt=prompt, model=model, width=width, height=height, output_format=output_format,
            output_compression=output_compression, quality=quality, background=background, end_user=end_user,
            negative_prompt=negative_prompt if spec.supports_negative_prompt and negative_prompt else None,
            price_per_image=Decimal(price_per_image) if price_per_image is not None else None,
        )
        connect_timeout, read_timeout = self.timeout or (CONNECT_TIMEOUT, READ_TIMEOUT or spec.read_timeout)
        timeout = CallTimeout(connect_timeout, read_timeout,
                              getattr(self.timeout, "deadline", None) or CALL_DEADLINE or read_timeout)
        started = time.monotonic()

        def send():
            self.on_call_start()
            try:
                image = backend.generate(request, self.credentials, timeout=timeout)
            except Exception:
                self.on_call_end()  # it came back, failed; a shutdown (a BaseException) cut it while out
                raise
            self.on_call_end()
            return image

        def attempt():
            if self.limiter is None:
                return send()
            blocked = self.limiter.blocked()
            if blocked:  # no credit on this key: the answer would be the same, and is not worth a call
                raise ProviderError(blocked, permanent=True, code="key_blocked")
            waited = self.limiter.wait_to_start(uuid.uuid4().hex)
            self.timings["limit_wait"] = self.timings.get("limit_wait", 0) + waited
            try:
                image = send()
            except ProviderError as exc:
                if exc.status == 429 and not exc.permanent:
                    self._quietly(self.limiter.on_rate_limited, exc.retry_after)
                if exc.blocks_key:
                    self._quietly(self.limiter.block, exc.message)
                raise
            self._quietly(self.limiter.on_success)
            return image

        def on_retry(error, delay):
            log.warning("%s %s: %s; retrying in %.1f s (%s)", backend.label, model, error.message, delay,
                        function_name or "-")

        image = call_with_retries(attempt, max_attempts=self.max_attempts, sleep=self.sleep, on_retry=on_retry)
        # The provider's own time: waiting for a slot is ours, and would skew the progress estimates.
        elapsed = time.monotonic() - started - self.timings.get("limit_wait", 0)
        self.timings["provider_call"] = elapsed
        if self.redis is not None:
            self._quietly(latency.record, self.redis, provider, model, elapsed)
        # The answer's own cost (usage priced per token, or what Runware charged); the price table
        # only when the answer gave none.
        cost = image.cost if image.cost is not None else backend.estimate_cost(request)
        return {
            "url": image.url,
            "bytes": image.data,
            "cost": cost,
            "request_id": image.request_id,
            "download_hosts": image.download_hosts,
            "latency": elapsed,
        }


    @staticmethod
    def _quietly(step, *args) -> None:
        """Book-keep a finished call in Redis; a lost Redis must not throw away an answer already paid for
        (an idle key's state is rebuilt)."""
        try:
            step(*args)
        except RedisError as exc:
            log.warning("provider limits not updated, Redis is unreachable: %s", exc)
