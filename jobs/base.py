"""`BaseAIFunction`: what an AI function provides to the `AIEngine`.

A function is one class in `jobs/functions/`, one line in `jobs/registry.py` and one test file.
The engine owns the phases (INIT → PREP → AI_CALL → PARSE → SAVE → DONE), progress, logs and
errors; the function owns the meaning: what is valid, what to load, what to ask, how to read the
answer and where to save it — and the words shown to staff at each phase.
"""

from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from jobs.limits import Limits
from jobs.providers.base import Credentials


@dataclass(frozen=True)
class AICall:
    """What build_prompt asks the engine to run: `AICore.<method>(**kwargs)`."""

    method: str
    kwargs: dict = field(default_factory=dict)
    estimate: Decimal | None = None  # USD, what the budget holds for the call until its charge is known


@dataclass(frozen=True)
class Prepared:
    """What `prepare` loaded, once per job: the items in run order, the account's provider key (decrypted
    here and kept only in memory) and limits. A function subclasses it with what its own calls need;
    for a multi-call function's item job, `item` is the item at hand."""

    items: list
    credentials: Credentials | None = None
    limits: Limits | None = None
    task_id: str = ""
    item: Any = None
    monthly_budget: Decimal | None = None  # USD; no call may take the month's spend past it

    def for_item(self, item) -> "Prepared":
        return replace(self, item=item)


class BaseAIFunction(ABC):
    # One AI call per item (images): the engine fans out one job per item and runs
    # build_prompt → AI_CALL → parse_response → save_output for each.
    requires_multiple_ai_calls = False
    # SAVE runs as its own job in the store queue (download, convert, store), so the next AI call of a
    # chain starts as soon as the previous answer is in.
    background_save = False

    @abstractmethod
    def get_name(self) -> str:
        """The registry name, e.g. 'generate_images_from_prompts'."""

    @abstractmethod
    def get_metadata(self) -> dict:
        """{'display_name', 'description', 'phases': {PHASE: label}} for progress views."""

    @abstractmethod
    def validate(self, payload: dict, account_id: int) -> dict:
        """Check the request before anything is queued. Return the cleaned payload (for
        multi-call functions: {'ids': [...to run], 'skipped': [...], 'warnings': [...]});
        raise ValidationError with a sentence for staff when nothing can run."""

    def claim(self, validated: dict, task_id: str, account_id: int) -> list:
        """Multi-call functions: atomically take the items for this task (so a second request cannot
        take them too) and return the ids taken; raise ValidationError when none could be taken.
        Called inside a transaction."""
        return []

    @abstractmethod
    def prepare(self, payload: dict, account_id: int) -> Prepared:
        """Load what the calls need (payload['ids'] names the items, for multi-call functions). Raise
        ValidationError when the configuration cannot work (no settings, bad provider/model)."""

    @abstractmethod
    def build_prompt(self, data: Prepared, account_id: int) -> AICall:
        """The AI call for `data` (for multi-call functions data.item is the current item).
        Raise ValidationError for a prompt that must not be sent (e.g. an unsafe template)."""

    @abstractmethod
    def parse_response(self, response: dict) -> dict:
        """Turn AICore's answer into what save_output stores; raise AIFunctionError if unusable."""

    @abstractmethod
    def save_output(self, parsed: dict, original_data: Prepared, account_id: int) -> dict:
        """Persist the result; return {'count': n, 'cost', ...}. Must be safe to run twice."""

    # Multi-call hooks: an item's life, each idempotent. An item job runs begin_item, the call and
    # record_answer; its SAVE job (background_save) or the item job itself then runs
    # answer_of → parse_response → save_output.
    def begin_item(self, item_id, task_id: str, account_id: int) -> bool:
        """Mark the item as being worked on; False when there is nothing to do (already done)."""
        return True

    def fail_item(self, item_id, task_id: str, account_id: int, reason: str, *,  # noqa: B027
                  request_id: str | None = None, charge_uncertain: bool = False) -> None:
        """Record why the item failed (and the provider's id of the call, and whether it may have been
        billed), so it never stays in progress (single-call functions have no items, so by default
        there is nothing to record)."""

    def record_answer(self, data: Prepared, response: dict) -> None:  # noqa: B027
        """Multi-call functions: make the provider's answer durable at once (what it cost, and the answer
        itself where a later job or a recovery can find it), before parsing or saving can fail."""

    def answer_of(self, data: Prepared) -> dict | None:
        """The answer record_answer kept for data.item, as AICore returned it; None when there is none
        (the call never answered)."""
        return None

    def item_ids_for(self, task_id: str, account_id: int) -> list:
        """The items of a task (after claim), in run order."""
        return []

    def item_states(self, item_ids: list, account_id: int) -> list[dict]:
        """[{'id', 'status', 'image_url', 'error', 'cost', 'started_at'}] from the database."""
        return []

    # Messages shown while the task runs; the engine never phrases them itself.
    def progress_message(self, phase: str, *, index: int = 0, total: int = 0, done: int = 0,
                         failed: int = 0) -> str:
        """The sentence for `phase`: the metadata's label, or for a cancel (CANCELING while calls in
        flight end, CANCELED after; `total` counts the items not started) a plain one."""
        if phase == "CANCELING":
            return "Canceling: the calls in flight finish, no new one starts"
        if phase == "CANCELED":
            return "Canceled"
        return self.get_metadata()["phases"].get(phase, phase)
