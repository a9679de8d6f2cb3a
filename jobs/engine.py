"""`AIEngine`: runs an AI function through INIT → PREP → AI_CALL → PARSE → SAVE → DONE.

The work is split over RQ jobs, and RQ does the scheduling:

- the request validates, claims and enqueues the **parent** job (`run_ai_task`);
- the parent (INIT, PREP) enqueues one **item** job per item, in run order, each under RQ's
  `RateLimit` for the provider key: RQ admits as many as the key allows at once, in enqueue order
  (ties broken by job id, which sorts in run order), and the rest wait in RQ holding no worker;
- an item job makes the AI call (AI_CALL) and makes the answer durable (`record_answer`), then, for
  functions that save in the background, hands over to a **SAVE** job in the store queue (PARSE,
  SAVE), so the key's slot is free for the next call while the answer is checked and stored;
- a **finisher** job depends on every item job (DONE), and whichever job sees the last item end
  writes the task's final state.

Each job writes only its own job meta (meta is last-writer-wins), and only what the progress reader
reads; every outcome is recorded in the database, which is the truth. When a job dies where it cannot
record its end (a killed work-horse, a killed worker, a lost Redis), `jobs.recovery` does it.
"""

import logging
import os
import time
import uuid

from redis.exceptions import RedisError
from rq import Queue, Retry, get_current_job
from rq.callbacks import Callback
from rq.exceptions import ShutDownImminentException
from rq.job import Dependency
from rq.rate_limit import RateLimitRegistry
from rq.timeouts import JobTimeoutException

from jobs import budget, progress_cache, runtime, webhooks
from jobs.ai_core import AICore
from jobs.connection import get_redis
from jobs.errors import AIFunctionError
from jobs.limits import KeyLimiter, rate_limit
from jobs.providers.base import ProviderError
from jobs.storage import FetchError, ImageRejected, NotStored
from models import AITaskLog, db, utcnow

log = logging.getLogger(__name__)

PARENT_TIMEOUT = 120
# The GPT image models take up to 300 s per call (their read timeout), with retries of quick failures,
# 429 pauses and the per-minute window on top. A job waiting for its RQ slot is not running: no timeout.
ITEM_TIMEOUT = int(os.environ.get("IMAGE_JOB_TIMEOUT", "900"))
SAVE_TIMEOUT = 180
# A finished job is only the ops' view of the last minutes: every outcome is in the database, which the
# pages and the API read. Hosted Redis plans are small, so finished jobs go after ten minutes; failed
# ones stay a week, for ops to read and retry in rq-dashboard.
RESULT_TTL = 600
FAILURE_TTL = 7 * 24 * 3600
# Restarts (deploys, the daily one) in a row that may cut an image's job before its call and hand it back
# to its queue.
SHUTDOWN_RETRIES = 3
# Failures whose message is written for staff already.
EXPECTED_ERRORS = (ProviderError, AIFunctionError, FetchError, ImageRejected, NotStored)


def new_task_id() -> str:
    """32 hex digits that sort by creation (milliseconds first): item job ids begin with it, so RQ's
    ordering of waiting jobs puts earlier tasks first."""
    return f"{int(time.time() * 1000):012x}{uuid.uuid4().hex[:20]}"


# Job ids are deterministic, so a re-run (or the recovery) finds the job of an item; no ':' —
# rq-dashboard splits dependency keys on it.
def item_job_id(task_id: str, position: int, item_id) -> str:
    return f"{task_id}-item-{position:03d}-{item_id}"


def save_job_id(task_id: str, item_id) -> str:
    return f"{task_id}-save-{item_id}"


def done_job_id(task_id: str) -> str:
    return f"{task_id}-done"


def item_job_ids(task: AITaskLog) -> dict:
    """{item id: its job id} for a task, in run order."""
    return {item_id: item_job_id(task.task_id, n, item_id) for n, item_id in enumerate(task.item_ids or [])}


def store_queue_name(queue_name: str) -> str:
    """The queue for SAVE jobs: workers take it first, so stored images land quickly."""
    return f"{queue_name}-store"


def readable_error(exc: BaseException) -> str:
    """The sentence staff see for a failure; internals stay in the worker log."""
    if isinstance(exc, ProviderError | AIFunctionError):
        return exc.message
    if isinstance(exc, EXPECTED_ERRORS):
        return str(exc)
    if isinstance(exc, RedisError):
        return "The job queue (Redis) could not be reached while this image was made; generate it again."
    if isinstance(exc, JobTimeoutException):
        return f"Timed out after {ITEM_TIMEOUT} s; retry it when the provider is faster."
    return f"Unexpected error ({type(exc).__name__}); the details are in the worker log."


# RQ calls this for an item or SAVE job that failed in a way the job could not record itself: a job
# timeout in a hung call, an abandoned job (its worker was killed). A killed work-horse is reported by
# the worker instead (worker.py), and a job Redis lost by the periodic sweep.
ON_FAILURE = Callback("jobs.recovery.job_failed", timeout=60)


class AIEngine:
    def __init__(self, function, task_id: str, account_id: int, *, queue: Queue | None = None,
                 task: AITaskLog | None = None):
        self.fn = function
        self.task_id = task_id
        self.account_id = account_id
        self.queue = queue
        self.task = task  # the task's row, when the caller has read it already

    # --- the request: validate, claim, log, enqueue -----------------------------------------------

    def start(self, payload: dict, *, created_by=None) -> dict:
        """Validate, claim, log and enqueue; with `dry_run`, only validate and answer the estimate."""
        validated = self.fn.validate(payload, self.account_id)
        if payload.get("dry_run"):
            return {"dry_run": True, **validated.get("estimate", {})}
        if validated.get("limits") is not None and self.queue is not None:
            # A person asking again is the retry a key without credit waits for ("add credit, then retry").
            KeyLimiter(self.queue.connection, validated["limits"]).unblock()
        with db.atomic():
            items = self.fn.claim(validated, self.task_id, self.account_id)
            # The request's payload is kept with the task (ids and options, never secrets).
            AITaskLog.create(
                task_id=self.task_id, account=self.account_id, function_name=self.fn.get_name(),
                state="queued", phase="INIT", message=self.fn.progress_message("INIT"),
                payload=payload, item_ids=items, created_by=created_by,
                totals={"total": len(items), "skipped": len(validated.get("skipped", []))},
                step_logs=[self._step("INIT", self.fn.progress_message("INIT"))],
            )
        # Enqueued only after the claim is committed, so no job can see an uncommitted row.
        try:
            self.queue.enqueue(
                "jobs.tasks.run_ai_task", self.task_id, job_id=self.task_id, job_timeout=PARENT_TIMEOUT,
                result_ttl=RESULT_TTL, failure_ttl=FAILURE_TTL,
                description=f"{self.fn.get_name()} for account {self.account_id}: {len(items)} items",
            )
        except Exception as exc:
            reason = "The job queue could not be reached, so nothing was started; try again."
            log.error("enqueue of task %s failed: %s", self.task_id, exc)
            for item_id in items:
                self.fn.fail_item(item_id, self.task_id, self.account_id, reason)
            self._update(state="failed", phase="DONE", error=reason, finished_at=utcnow())
            raise AIFunctionError(reason) from exc
        return {"task_id": self.task_id, "items": items, "skipped": validated.get("skipped", [])}

    # --- the parent job: INIT, PREP, fan out ------------------------------------------------------

    def run_parent(self, payload: dict) -> dict:
        try:
            data = self.fn.prepare({**payload, "task_id": self.task_id}, self.account_id)
        except AIFunctionError as exc:
            # The settings changed between the request and now: every item fails with the reason.
            for item_id in self.fn.item_ids_for(self.task_id, self.account_id):
                self.fn.fail_item(item_id, self.task_id, self.account_id, exc.message)
            self._update(state="failed", phase="DONE", message=exc.message, error=exc.message,
                         started_at=utcnow(), finished_at=utcnow())
            raise
        prep_message = self.fn.progress_message("PREP", total=len(data.items))
        task = AITaskLog.get(AITaskLog.task_id == self.task_id)
        if task.canceled_at is not None:  # canceled while it waited: its items are pending again
            return self.finish()
        self._update(state="running", started_at=utcnow(), phase="PREP", message=prep_message,
                     step=("PREP", prep_message))
        if not self.fn.requires_multiple_ai_calls:
            return self._run_single(data)
        job_ids = self._enqueue_items(task, data)
        # The finisher: DONE once every item job has ended, whatever each one's outcome.
        self._queue().enqueue(
            "jobs.tasks.finish_ai_task", self.task_id, job_id=done_job_id(self.task_id),
            depends_on=Dependency(jobs=job_ids, allow_failure=True), job_timeout=PARENT_TIMEOUT,
            result_ttl=RESULT_TTL, failure_ttl=FAILURE_TTL,
            description=f"{self.fn.get_name()}: finish task {self.task_id}")
        message = self.fn.progress_message("AI_CALL", index=1, total=len(job_ids))
        self._update(phase="AI_CALL", message=message, step=("AI_CALL", message))
        return {"queued": len(job_ids)}

    def _enqueue_items(self, task: AITaskLog, data) -> list[str]:
        """One job per item, in run order; RQ admits them under the key's RateLimit."""
        limit = rate_limit(self._redis(), data.limits) if data.limits is not None else None
        queue = self._queue()
        job_ids = []
        for item_id, job_id in item_job_ids(task).items():
            # One at a time: RQ does not apply a RateLimit to jobs enqueued in a batch.
            enqueue_item(queue, self.task_id, item_id, job_id, limit)
            job_ids.append(job_id)
            if len(job_ids) == 1:
                # The first call is on its way: the rest of the fan-out yields the cores to it.
                runtime.lower_priority()
        return job_ids

    def _run_single(self, data) -> dict:
        """One AI call for the whole task (functions without requires_multiple_ai_calls). The task is
        `running` until this ends."""
        try:
            call = self.fn.build_prompt(data, self.account_id)
            self._phase("AI_CALL", self.fn.progress_message("AI_CALL", index=1, total=1))
            response = self._call(call, data)
            self._phase("PARSE", self.fn.progress_message("PARSE", done=1))
            parsed = self.fn.parse_response(response)
            self._phase("SAVE", self.fn.progress_message("SAVE", done=1))
            result = self.fn.save_output(parsed, data, self.account_id)
        except Exception as exc:
            reason = readable_error(exc)
            self._update(state="failed", phase="DONE", message=reason, error=reason, finished_at=utcnow(),
                         step=("DONE", reason))
            raise
        message = self.fn.progress_message("DONE", done=1)
        self._update(state="done", phase="DONE", message=message, finished_at=utcnow(),
                     cost=result.get("cost") or 0, step=("DONE", message))
        return {"success": True, **result}

    # --- one item: its call, then its save ---------------------------------------------------------

    def run_item(self, item_id) -> dict:
        """PREP → build_prompt → AI_CALL, the answer made durable; then PARSE → SAVE, in a SAVE job of its
        own (so the key's slot is free for the next call) or, for other functions, here."""
        if not self.fn.begin_item(item_id, self.task_id, self.account_id):
            # Already generated (a requeue of a finished item) or taken by a newer task: no call, no charge.
            return {"success": True, "skipped": True}
        sending, answered = {"now": False}, False  # sending: a request is out, which the provider may bill
        try:
            data = self._prepare_item(item_id)
            call = self.fn.build_prompt(data, self.account_id)
            if not budget.admit_call(self._redis(), self.account_id, item_id, self.task_id,
                                     provider=call.kwargs.get("provider"), model=call.kwargs.get("model"),
                                     estimate=call.estimate, monthly_limit=data.monthly_budget):
                # The task was canceled before this call started: the item is pending again, no call made.
                self.finish_if_last()
                self._forget_view()
                return {"success": True, "skipped": True, "canceled": True}
            ai_core = AICore(data.credentials, redis=self._redis(), limits=data.limits, on_call_start=lambda: (
                sending.update(now=True), self._write_meta({"phase": "AI_CALL", "call_started_at": time.time()})),
                on_call_end=lambda: sending.update(now=False))
            self._write_meta({"phase": "PREP",
                              "expected_seconds": ai_core.expected_seconds(call.method, call.kwargs)})
            response = getattr(ai_core, call.method)(**call.kwargs)
            # The provider has billed: the answer is recorded and handed to its SAVE job whole, whatever a
            # dyno's shutdown says meanwhile (it is raised when this block ends).
            with runtime.uninterrupted():
                self._free_slot()
                # What is left of this job yields the cores to the next image's job, starting in the slot now.
                runtime.lower_priority()
                self.fn.record_answer(data, response)
                answered = True
                if self.fn.background_save and get_current_job() is not None:  # inline runs save here
                    self._write_meta({"phase": "SAVE"})
                    enqueue_save(self._queue(), self.task_id, item_id)
                    return {"success": True, "saving": True}
            result = self._parse_and_save(data, response)
        except ShutDownImminentException:
            # A restart (deploy, the daily one) reached this job before it could end.
            if answered and self.fn.background_save:
                return {"success": True, "saving": True}  # recorded and handed over: nothing was cut
            if not sending["now"] and self._may_hand_back():
                # No request out (before its call, or waiting out a 429 or the per-minute window): the job
                # goes back to the front of its queue for the next worker.
                log.warning("item %s of task %s: queued again, a restart came before its call", item_id,
                            self.task_id)
                return Retry(max=SHUTDOWN_RETRIES, enqueue_at_front=True)
            # Its request was out: the provider may bill it, so it is not made again on our own.
            self.fn.fail_item(item_id, self.task_id, self.account_id, _cut_sentence(sending["now"]),
                              charge_uncertain=sending["now"])
            self.finish_if_last()
            self._forget_view()
            raise
        except BaseException as exc:
            self._record_failure(item_id, exc)
            raise  # the job fails, so ops see it in the failed registry and can requeue it
        return self._record_success(result)

    @staticmethod
    def _may_hand_back() -> bool:
        job = get_current_job()
        return job is not None and (job.number_of_retries or 0) < SHUTDOWN_RETRIES

    def run_save(self, item_id) -> dict:
        """PARSE and SAVE for one item from the answer its call kept. Safe to run again (ops may requeue
        it; a recovery does after a killed worker)."""
        self._write_meta({"phase": "SAVE"})
        try:
            data = self._prepare_item(item_id)
            response = self.fn.answer_of(data)
            if response is None:
                raise AIFunctionError("The provider's answer for this image was not kept; generate it again.")
            result = self._parse_and_save(data, response)
        except ShutDownImminentException as exc:
            if self._may_hand_back():
                return Retry(max=SHUTDOWN_RETRIES, enqueue_at_front=True)  # the answer is kept: save it later
            self._record_failure(item_id, exc)
            raise
        except BaseException as exc:
            self._record_failure(item_id, exc)
            raise
        return self._record_success(result)

    def _free_slot(self) -> None:
        """The provider call is over: give the key's RQ slot to its next image now rather than when this
        job ends, so that image's call starts while this one records and hands over its answer. RQ's own
        release at the job's end then finds the slot already free."""
        job = get_current_job()
        if job is None or not job.has_rate_limit:
            return
        try:
            RateLimitRegistry.from_job(job).release_and_enqueue(job.id)
        except RedisError as exc:  # RQ releases it at the job's end, or its maintenance does
            log.warning("job %s: provider slot not released early, Redis is unreachable: %s", job.id, exc)

    def _parse_and_save(self, data, response) -> dict:
        parsed = self.fn.parse_response(response)
        return self.fn.save_output(parsed, data, self.account_id)

    def _prepare_item(self, item_id):
        """The settings, the key and the item, loaded once for this job."""
        task = self.task or AITaskLog.get((AITaskLog.task_id == self.task_id) & (AITaskLog.account == self.account_id))
        data = self.fn.prepare({**task.payload, "ids": [item_id], "task_id": self.task_id}, self.account_id)
        if not data.items:
            raise AIFunctionError("The item no longer exists.")
        return data.for_item(data.items[0])

    def _record_failure(self, item_id, exc: BaseException) -> None:
        reason = readable_error(exc)
        if not isinstance(exc, EXPECTED_ERRORS):
            log.exception("item %s of task %s failed", item_id, self.task_id)
        if isinstance(exc, ProviderError):
            self.fn.fail_item(item_id, self.task_id, self.account_id, reason, request_id=exc.request_id,
                              charge_uncertain=exc.maybe_charged)
        else:
            self.fn.fail_item(item_id, self.task_id, self.account_id, reason)
        self.finish_if_last()
        self._forget_view()

    def _record_success(self, result: dict) -> dict:
        self.finish_if_last()
        self._forget_view()
        return {"success": True, "image_url": result.get("image_url"), "cost": _money(result.get("cost"))}

    def _call(self, call, data):
        ai_core = AICore(data.credentials, redis=self._redis(), limits=data.limits)
        return getattr(ai_core, call.method)(**call.kwargs)

    # --- DONE ------------------------------------------------------------------------------------

    def finish(self) -> dict:
        """DONE: once every item has ended, the totals, cost and final message (each item's writer
        commits its own outcome first, so whichever ends last sees them all). Until then, the totals so
        far."""
        summary = self.summary()
        if summary["unfinished"] == 0 and summary["canceled"]:
            message = self.fn.progress_message("CANCELED", done=summary["generated"], failed=summary["failed"],
                                               total=summary["not_started"])
            self._update(state="canceled", phase="DONE", message=message, totals=summary["totals"],
                         cost=summary["cost"], finished_at=utcnow(), step=("DONE", message))
        elif summary["unfinished"] == 0:
            message = self.fn.progress_message("DONE", done=summary["generated"], failed=summary["failed"])
            self._update(state="done", phase="DONE", message=message, totals=summary["totals"],
                         cost=summary["cost"], finished_at=utcnow(), step=("DONE", message))
        else:
            self._update(totals=summary["totals"], cost=summary["cost"])
        self._forget_view()
        return {"ended": summary["unfinished"] == 0, "images_generated": summary["generated"],
                "images_failed": summary["failed"], "cost": _money(summary["cost"])}

    def finish_if_last(self) -> None:
        # Items end after the finisher when saves run beside the calls, or when ops requeue one.
        if self.summary()["unfinished"] == 0:
            self.finish()

    def summary(self) -> dict:
        task = AITaskLog.get(AITaskLog.task_id == self.task_id)
        states = self.fn.item_states(list(task.item_ids or []), self.account_id)
        generated = sum(s["status"] == "generated" for s in states)
        failed = sum(s["status"] == "failed" for s in states)
        canceled = task.canceled_at is not None
        not_started = sum(not_started_after_cancel(s, self.task_id) for s in states) if canceled else 0
        # What the provider charged, including images it answered that then failed (damaged bytes,
        # a storage error): that money is spent either way.
        cost = sum((s["cost"] for s in states if s["cost"] is not None), 0)
        totals = {"total": len(states), "generated": generated, "failed": failed, "not_started": not_started,
                  "skipped": int((task.totals or {}).get("skipped", 0)), "cost": _money(cost)}
        return {"generated": generated, "failed": failed, "not_started": not_started, "canceled": canceled,
                "unfinished": len(states) - generated - failed - not_started, "cost": cost, "totals": totals}

    # --- bookkeeping -----------------------------------------------------------------------------

    def _phase(self, phase: str, message: str) -> None:
        self._update(phase=phase, message=message, step=(phase, message))

    def _update(self, step=None, **fields):
        if step:
            task = AITaskLog.get(AITaskLog.task_id == self.task_id)
            fields["step_logs"] = [*(task.step_logs or []), self._step(*step)]
        AITaskLog.update(**fields).where(AITaskLog.task_id == self.task_id).execute()
        if fields.get("state") in webhooks.ENDED:  # every way a task ends is written here
            webhooks.task_finished(self.task_id)

    @staticmethod
    def _step(phase: str, message: str) -> dict:
        return {"phase": phase, "message": message, "at": utcnow().isoformat() + "Z"}

    def _write_meta(self, values: dict):
        """The live view of this job, for the progress reader: its phase, when its call started and how
        long such calls take."""
        job = get_current_job()
        if job is None:  # run inline (tests, CLI): the database is the record
            return
        job.meta.update(values)
        try:
            job.save_meta()
        except RedisError as exc:
            # Meta is only the live view; the database is the record, so a lost Redis does not fail the image.
            log.warning("job %s: live progress not saved, Redis is unreachable: %s", job.id, exc)

    def _forget_view(self) -> None:
        """The task's images changed: its cached progress view goes (the app's Redis when run inline)."""
        progress_cache.forget(self._redis() or get_redis(), self.task_id)

    def _queue(self) -> Queue:
        if self.queue is None:
            job = get_current_job()
            self.queue = Queue(job.origin, connection=job.connection)
        return self.queue

    def _redis(self):
        job = get_current_job()
        if job is not None:
            return job.connection
        return self.queue.connection if self.queue is not None else None


def _cut_sentence(called: bool) -> str:
    if called:
        return ("Interrupted by a restart of the workers during its provider call, which the provider may "
                "have billed; it was not made again on its own. Retry it.")
    return f"Interrupted by {SHUTDOWN_RETRIES} restarts of the workers in a row before its call. Retry it."


def not_started_after_cancel(state: dict, task_id: str) -> bool:
    """An item of a canceled task that will not be made by it: let go (pending), or taken by a newer task.
    Only its own calls in flight still end."""
    if state["status"] in ("generated", "failed"):
        return False
    return not (state.get("task_id") == task_id and state["status"] == "generating")


def enqueue_item(queue: Queue, task_id: str, item_id, job_id: str, limit) -> None:
    """An item's job (the fan-out, or a recovery after Redis lost it), under its key's RateLimit."""
    queue.enqueue("jobs.tasks.run_ai_item", task_id, item_id, job_id=job_id, rate_limit=limit,
                  job_timeout=ITEM_TIMEOUT, result_ttl=RESULT_TTL, failure_ttl=FAILURE_TTL, on_failure=ON_FAILURE,
                  description=f"item {item_id} of task {task_id}")


def enqueue_save(queue: Queue, task_id: str, item_id) -> None:
    """The SAVE job of an item whose answer is kept; the same id each time, so a second enqueue (a
    recovery racing a requeue) replaces the first rather than saving twice at once."""
    main = queue.name.removesuffix("-store")
    Queue(store_queue_name(main), connection=queue.connection).enqueue(
        "jobs.tasks.save_ai_item", task_id, item_id, job_id=save_job_id(task_id, item_id), job_timeout=SAVE_TIMEOUT,
        result_ttl=RESULT_TTL, failure_ttl=FAILURE_TTL, on_failure=ON_FAILURE,
        description=f"save item {item_id} of task {task_id}")


def _money(value):
    return None if value is None else float(value)
