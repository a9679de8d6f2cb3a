"""What a fake can be told to do to one call (Fault), what it answers (Reply) and records (Recorded)."""

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Fault:
    """What to do to one call. Kinds any fake knows: ok | slow (waits `delay`) | timeout (waits 30 s) |
    reset | cut_body | never_ending_body | huge_body | trickle (the real answer, a byte every `interval`) |
    raw (status, body, content_type as given) |
    non_image | truncated_image | invalid_base64 | expired_url (URL answers only: not FakeOpenAI's base64) |
    no_image | rate_limit | server_error | unauthorized | bad_request. OpenAI's: insufficient_quota |
    billing_hard_limit | moderation_blocked | model_not_found | permission_denied.
    Runware's: insufficient_balance | forbidden | error_in_200 | wrong_task. `retry_after` and
    `retry_after_ms` are added as headers to whatever is answered."""

    kind: str = "ok"
    status: int | None = None
    retry_after: str | None = None  # the `retry-after` header: seconds or an HTTP date
    retry_after_ms: str | None = None
    delay: float = 0.0  # seconds to wait before answering (timeout: 30 unless given)
    message: str | None = None
    body: bytes | None = None  # raw: the exact body
    content_type: str | None = None
    size: int = 100 * 1024 * 1024  # huge_body: bytes sent
    chunked: bool = False  # huge_body: without a content-length
    image: str = "html"  # non_image: html | svg | pdf
    interval: float = 1.0  # trickle: seconds between two bytes
    trickle_headers: bool = False  # trickle: the status line and headers too, not only the body

    @classmethod
    def of(cls, value) -> "Fault":
        return value if isinstance(value, Fault) else cls(kind=value or "ok")


@dataclass
class Reply:
    status: int
    payload: Any = None
    body: bytes | None = None
    content_type: str = "application/json"
    headers: dict = field(default_factory=dict)


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict
    body: bytes
    json: Any
    prompt: str | None
    at: float
