"""`AIEngine`: runs an AI function through INIT → PREP → AI_CALL → PARSE → SAVE → DONE.

The work is split over RQ jobs: the request validates, claims and enqueues a parent job; the parent
(INIT, PREP) enqueues one job per item, chained so items run one at a time per chain (two chains per
call the provider key allows at once: one calls while its partner's job is prepared and waits in the
key's line, see jobs.limits), and a DONE job that depends on all of them. An item job makes the AI
call and, for functions that save in the background, hands the answer to a SAVE job in the store queue
when its chain goes on, so the chain's next job need not wait. Each job writes only its own job meta (meta is
last-writer-wins, so shared meta would lose updates) and records every outcome in the database, which
is the truth; whichever job sees the last item end writes the task's final state.
"""

import logging
import os
import time
from datetime import UTC

from redis.exceptions import RedisError
from rq import Queue, get_current_job
from rq.job import Dependency
from rq.timeouts import JobTimeoutException

from jobs import runtime
from jobs.ai_core import AICore
from jobs.errors import AIFunctionError
from jobs.limits import KeyLimiter, Limits, LimitWaitTooLong, chains_for, turn, waiter_id
from jobs.providers.base import ProviderError
from jobs.stopwatch import Stopwatch
from jobs.storage import FetchError, ImageRejected, NotStored
from models import AITaskLog, db, utcnow

log = logging.getLogger(__name__)

PARENT_TIMEOUT = 120
# The GPT image models take up to 300 s per call (their read timeout), with the wait for a slot,
# retries of quick failures and the download on top.
ITEM_TIMEOUT = int(os.environ.get("IMAGE_JOB_TIMEOUT", "900"))
# Waiting for a free call on the key gets a third of an image job's time, the call and its retries the
# rest, so a long line ends in its own reason rather than a job timeout blaming the provider.
LINE_WAIT = ITEM_TIMEOUT / 3
SAVE_TIMEOUT = 180
RESULT_TTL = 24 * 3600
# Failures whose message is written for staff already.
EXPECTED_ERRORS = (ProviderError, AIFunctionError, FetchError, ImageRejected, NotStored, LimitWaitTooLong)


def item_job_id(task_id: str, item_id) -> str:
    # Deterministic, so a re-run (or the sweep) finds the job of an image; no ':' — rq-dashboard
    # splits dependency keys on it.
    return f"{task_id}-item-{item_id}"


def done_job_id(task_id: str) -> str:
    return f"{task_id}-done"


def save_job_id(task_id: str, item_id) -> str:
    return f"{task_id}-save-{item_id}"


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


class AIEngine:
    def __init__(self, function, task_id: str, account_id: int, *, queue: Queue | None = None):
        self.fn = function
        self.task_id = task_id
        self.account_id = account_id
        self.queue = queue

    # --- the request: validate, claim, log, enqueue -----------------------------------------------

    def start(self, payload: dict) -> dict:
        validated = self.fn.validate(payload, self.account_id)
        if validated.get("limits") is not None and self.queue is not None:
            # A person asking again is the retry a key without credit waits for ("add credit, then retry").
            KeyLimiter(self.queue.connection, validated["limits"]).unblock()
        with db.atomic():
            items = self.fn.claim(validated, self.task_id, self.account_id)
            # The request's payload is kept with the task (ids and options, never secrets).
            AITaskLog.create(
                task_id=self.task_id, account=self.account_id, function_name=self.fn.get_name(),
                state="queued", phase="INIT", message=self.fn.progress_message("INIT"),
                payload=payload, item_ids=items,
                totals={"total": len(items), "skipped": len(validated.get("skipped", []))},
                step_logs=[self._step("INIT", self.fn.progress_message("INIT"))],
            )
        # Enqueued only after the claim is committed, so no job can see an uncommitted row.
        try:
            self.queue.enqueue(
                "jobs.tasks.run_ai_task", self.fn.get_name(),
                {**payload, "ids": items, "task_id": self.task_id},
                self.account_id, job_id=self.task_id, job_timeout=PARENT_TIMEOUT, result_ttl=RESULT_TTL,
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
            data = self.fn.prepare(payload, self.account_id)
        except AIFunctionError as exc:
            # The settings changed between the request and now: every item fails with the reason.
            for item_id in self.fn.item_ids_for(self.task_id, self.account_id):
                self.fn.fail_item(item_id, self.task_id, self.account_id, exc.message)
            self._update(state="failed", phase="DONE", message=exc.message, error=exc.message,
                         started_at=utcnow(), finished_at=utcnow())
            raise
        items = [getattr(item, "id", item) for item in data["items"]]
        prep_message = self.fn.progress_message("PREP", total=len(items))
        running = {"state": "running", "started_at": utcnow(), "phase": "PREP", "message": prep_message,
                   "step": ("PREP", prep_message)}
        if not self.fn.requires_multiple_ai_calls:
            self._update(**running)
            return self._run_single(data)
        first_calls, rest = self._chain_jobs(items, chains_for(self._redis(), data.get("limits")), data.get("limits"))
        # The first calls' jobs go first, in one short pipeline, so they start before the bookkeeping
        # and while RQ registers the rest (each dependent costs it a few milliseconds). The partner
        # chains' first jobs, which wait for a slot anyway, come with the rest; all of that runs at
        # a lower CPU priority so it does not take the cores from the first calls.
        self._queue().enqueue_many(first_calls)
        runtime.lower_priority()
        self._update(**running)
        self._queue().enqueue_many(rest)
        children = [item_job_id(self.task_id, item_id) for item_id in items]
        self._write_meta({"children": children, "done_job": done_job_id(self.task_id)})
        self._update(phase="AI_CALL", message=self.fn.progress_message("AI_CALL", index=1, total=len(items)))
        return {"queued": len(children)}

    def _chain_jobs(self, items: list, parallel_chains: int, limits: Limits | None) -> tuple[list, list]:
        """The item jobs in chains and the DONE job, as (the first calls' jobs, everything else)."""
        chains = max(1, min(parallel_chains, len(items)))
        if limits is not None and self._redis() is not None:
            # The chains' first jobs start together; their places keep the task's order of calls.
            task = AITaskLog.get(AITaskLog.task_id == self.task_id)
            KeyLimiter(self._redis(), limits).reserve(
                [waiter_id(_place(task, item_id), item_job_id(self.task_id, item_id)) for item_id in items[:chains]])
        tails: list = [None] * chains
        batch = []
        for n, item_id in enumerate(items):
            chain = n % chains
            job_id = item_job_id(self.task_id, item_id)
            depends = Dependency(jobs=[tails[chain]], allow_failure=True) if tails[chain] else None
            batch.append(Queue.prepare_data(
                "jobs.tasks.run_ai_item", args=(self.task_id, self.fn.get_name(), item_id, self.account_id),
                job_id=job_id, depends_on=depends, timeout=ITEM_TIMEOUT, result_ttl=RESULT_TTL,
                description=f"{self.fn.get_name()}: item {item_id} of task {self.task_id}",
            ))
            tails[chain] = job_id
        batch.append(Queue.prepare_data(
            "jobs.tasks.finish_ai_task", args=(self.task_id, self.fn.get_name(), self.account_id),
            job_id=done_job_id(self.task_id), result_ttl=RESULT_TTL, timeout=PARENT_TIMEOUT,
            depends_on=Dependency(jobs=[t for t in tails if t], allow_failure=True),
            description=f"{self.fn.get_name()}: finish task {self.task_id}",
        ))
        first_calls = (chains + 1) // 2  # with 2·C chains, C calls at once
        return batch[:first_calls], batch[first_calls:]

    def _run_single(self, data: dict) -> dict:
        """One AI call for the whole task (functions without requires_multiple_ai_calls)."""
        try:
            call = self.fn.build_prompt(data, self.account_id)
            self._update(phase="AI_CALL", message=self.fn.progress_message("AI_CALL", index=1, total=1))
            response = self._call(call, data)
            self._update(phase="PARSE", message=self.fn.progress_message("PARSE", done=1))
            parsed = self.fn.parse_response(response)
            self._update(phase="SAVE", message=self.fn.progress_message("SAVE", done=1))
            result = self.fn.save_output(parsed, data, self.account_id)
        except Exception as exc:
            reason = readable_error(exc)
            self._update(state="failed", phase="DONE", message=reason, error=reason, finished_at=utcnow())
            raise
        self._update(state="done", phase="DONE", message=self.fn.progress_message("DONE", done=1),
                     finished_at=utcnow(), cost=result.get("cost") or 0)
        return {"success": True, **result}

    # --- one item job -----------------------------------------------------------------------------

    def run_item(self, item_id) -> dict:
        """PREP → build_prompt → AI_CALL → PARSE, then SAVE: handed to the store queue when the chain goes
        on, so its next job does not wait for the download, conversion and storage; else inline."""
        clock = Stopwatch()
        if not self.fn.begin_item(item_id, self.task_id, self.account_id):
            # Already generated (a requeue of a finished item) or taken by a newer task: no call, no charge.
            self._write_meta({"status": "skipped", "phase": "DONE"})
            return {"success": True, "skipped": True}
        clock.lap("claim")
        # The work-horse's pid tells ops (and the fault tests) which process holds the image.
        self._write_meta({"status": "generating", "phase": "PREP", "progress": 2, "error": None,
                          "pid": os.getpid()})
        data = {}
        try:
            data = self._item_data(item_id)
            call = self.fn.build_prompt(data, self.account_id)
            ai_core = AICore(data.get("credentials"), redis=self._redis(), limits=data.get("limits"),
                             place=data["place"], max_wait=LINE_WAIT, on_call_start=lambda: self._write_meta(
                                 {"phase": "AI_CALL", "progress": 5, "call_started_at": time.time()}))
            # Until its call has a slot the image stays in PREP: prepared, waiting for its turn.
            self._write_meta({"expected_seconds": ai_core.expected_seconds(call.method, call.kwargs)})
            clock.lap("prompt")
            response = getattr(ai_core, call.method)(**call.kwargs)
            self.fn.record_answer(item_id, self.task_id, self.account_id, response)
            # The slot is free again: what is left of this image (parse, save or hand-over, RQ's
            # bookkeeping) yields the cores to the call starting in it now.
            runtime.lower_priority()
            clock.add(ai_core.timings)
            self._write_meta({"phase": "PARSE", "progress": 90})
            parsed = self.fn.parse_response(response)
            clock.lap("parse")
            if self.fn.background_save and self._chain_goes_on():
                self._hand_off_save(item_id, parsed)
                clock.lap("handoff")
                self._write_meta({"phase": "SAVE", "progress": 92, "timings": clock.timings})
                return {"success": True, "saving": True}
            result = self.fn.save_output(parsed, data, self.account_id)
        except BaseException as exc:
            self._leave_line(data, item_id)  # a place reserved for a call that will not happen
            self._record_failure(item_id, exc)
            raise  # the job fails, so ops see it in the failed registry and can requeue it
        return self._record_success(result, clock)

    def run_save(self, item_id, parsed: dict) -> dict:
        """SAVE for one item, in the store queue. Safe to run again (ops may requeue it)."""
        clock = Stopwatch()
        self._write_meta({"status": "generating", "phase": "SAVE", "progress": 95, "pid": os.getpid()})
        try:
            data = self._item_data(item_id)
            clock.lap("prepare")
            result = self.fn.save_output(parsed, data, self.account_id)
        except BaseException as exc:
            self._record_failure(item_id, exc)
            raise
        return self._record_success(result, clock)

    def _item_data(self, item_id) -> dict:
        task = AITaskLog.get((AITaskLog.task_id == self.task_id) & (AITaskLog.account == self.account_id))
        data = self.fn.prepare({**task.payload, "ids": [item_id]}, self.account_id)
        if not data["items"]:
            raise AIFunctionError("The item no longer exists.")
        return {**data, "item": data["items"][0], "task_id": self.task_id, "place": _place(task, item_id)}

    def _leave_line(self, data: dict, item_id) -> None:
        if data.get("limits") is not None and self._redis() is not None:
            waiter = waiter_id(data["place"], item_job_id(self.task_id, item_id))
            KeyLimiter(self._redis(), data["limits"]).leave(waiter)

    def _chain_goes_on(self) -> bool:
        """Whether another item of this task waits for this job. A chain's last item saves in its own
        job: nothing waits for it, and handing over would only add a job's start to the task's end."""
        job = get_current_job()
        try:
            return job is not None and any(d != done_job_id(self.task_id) for d in job.dependent_ids)
        except RedisError:
            return False  # no hand-over without Redis: this job saves the image itself

    def _hand_off_save(self, item_id, parsed: dict) -> None:
        job = get_current_job()
        Queue(store_queue_name(job.origin), connection=job.connection).enqueue(
            "jobs.tasks.save_ai_item", self.task_id, self.fn.get_name(), item_id, self.account_id, parsed,
            job_id=save_job_id(self.task_id, item_id), job_timeout=SAVE_TIMEOUT, result_ttl=RESULT_TTL,
            description=f"{self.fn.get_name()}: save item {item_id} of task {self.task_id}",
        )

    def _record_failure(self, item_id, exc: BaseException) -> None:
        reason = readable_error(exc)
        if not isinstance(exc, EXPECTED_ERRORS):
            log.exception("item %s of task %s failed", item_id, self.task_id)
        if isinstance(exc, ProviderError):
            self.fn.fail_item(item_id, self.task_id, self.account_id, reason, request_id=exc.request_id,
                              charge_uncertain=exc.maybe_charged)
        else:
            self.fn.fail_item(item_id, self.task_id, self.account_id, reason)
        self._write_meta({"status": "failed", "phase": "DONE", "progress": 100, "error": reason})
        self._refresh_if_finished()

    def _record_success(self, result: dict, clock: Stopwatch) -> dict:
        clock.add(result.get("timings") or {})
        self._write_meta({"status": "generated", "phase": "DONE", "progress": 100,
                          "image_url": result.get("image_url"), "cost": _money(result.get("cost"))})
        started = time.perf_counter()
        self._refresh_if_finished()
        clock.timings["task_summary"] = time.perf_counter() - started
        self._write_meta({"timings": clock.timings})
        return {"success": True, "image_url": result.get("image_url"), "cost": _money(result.get("cost"))}

    def _call(self, call, data):
        ai_core = AICore(data.get("credentials"), redis=self._redis(), limits=data.get("limits"))
        return getattr(ai_core, call.method)(**call.kwargs)

    # --- DONE ------------------------------------------------------------------------------------

    def finish(self, summary: dict | None = None) -> dict:
        """DONE: once every item has ended, the totals, cost and final message. Called by the DONE job
        and after every item ends; whichever sees the last item end writes it (each writer commits its
        own item first, so the last one always sees them all)."""
        summary = summary or self.summary()
        message = self.fn.progress_message("DONE", done=summary["generated"], failed=summary["failed"])
        if summary["unfinished"] == 0:
            self._update(state="done", phase="DONE", message=message, totals=summary["totals"],
                         cost=summary["cost"], finished_at=utcnow(), step=("DONE", message))
        else:
            self._update(totals=summary["totals"], cost=summary["cost"])
        return {"success": True, "images_generated": summary["generated"], "images_failed": summary["failed"],
                "cost": _money(summary["cost"])}

    def summary(self) -> dict:
        states = self.fn.item_states(self.fn.item_ids_for(self.task_id, self.account_id), self.account_id)
        generated = sum(s["status"] == "generated" for s in states)
        failed = sum(s["status"] == "failed" for s in states)
        # What the provider charged, including images it answered that then failed (damaged bytes,
        # a storage error): that money is spent either way.
        cost = sum((s["cost"] for s in states if s["cost"] is not None), 0)
        task = AITaskLog.get(AITaskLog.task_id == self.task_id)
        totals = {"total": len(states), "generated": generated, "failed": failed,
                  "skipped": int((task.totals or {}).get("skipped", 0)), "cost": _money(cost)}
        return {"generated": generated, "failed": failed, "unfinished": len(states) - generated - failed,
                "cost": cost, "totals": totals}

    def _refresh_if_finished(self):
        # Items end after the DONE job when saves run beside the chain, or when ops requeue one.
        summary = self.summary()
        if summary["unfinished"] == 0:
            self.finish(summary)

    # --- bookkeeping -----------------------------------------------------------------------------

    def _update(self, step=None, **fields):
        if step:
            task = AITaskLog.get(AITaskLog.task_id == self.task_id)
            fields["step_logs"] = [*(task.step_logs or []), self._step(*step)]
        AITaskLog.update(**fields).where(AITaskLog.task_id == self.task_id).execute()
        if "phase" in fields or "message" in fields:
            self._write_meta({k: fields[k] for k in ("phase", "message", "state") if k in fields})

    @staticmethod
    def _step(phase: str, message: str) -> dict:
        return {"phase": phase, "message": message, "at": utcnow().isoformat() + "Z"}

    def _write_meta(self, values: dict):
        job = get_current_job()
        if job is None:  # run inline (tests, CLI): the database is the record
            return
        job.meta.update(values)
        try:
            job.save_meta()
        except RedisError as exc:
            # Meta is only the live view; the database is the record, so a lost Redis does not fail the image.
            log.warning("job %s: live progress not saved, Redis is unreachable: %s", job.id, exc)

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


def _place(task: AITaskLog, item_id) -> str:
    """An item's turn in its provider key's line: earlier tasks first, then the task's own order."""
    item_ids = list(task.item_ids or [])
    position = item_ids.index(item_id) if item_id in item_ids else len(item_ids)
    return turn(task.created_at.replace(tzinfo=UTC).timestamp(), position)


def _money(value):
    return None if value is None else float(value)
