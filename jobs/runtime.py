"""What every job needs before it runs: the database bound to DATABASE_URL.

Jobs bind it themselves (not only worker.py), so that they also run under a plain `rq worker`
or inline in tests. Each job opens and closes its own connection around its work.
"""

import contextlib
import os

from config import load_config
from models import db, open_database

# True in a forked RQ work-horse (see worker.ImageWorker): a process that exits after its one job, so
# lowering its CPU priority affects nothing after it.
in_work_horse = False


# How much lower work that can wait a few milliseconds runs than provider calls about to start: SAVE
# jobs, the parent's fan-out once the first calls are queued, an image's job once its call ended.
YIELD_NICENESS = 10


def lower_priority(niceness: int = YIELD_NICENESS) -> None:
    """Let this job's remaining work yield the cores to more urgent work (a no-op outside a
    work-horse: inline runs in tests or the CLI keep their priority)."""
    if in_work_horse:
        os.nice(niceness)


def ensure_database(config=None):
    if db.obj is None:
        open_database((config or load_config()).database_url)
    return db


# --- a dyno's shutdown, inside a work-horse ----------------------------------------------------------
#
# RQ's HerokuWorker raises ShutDownImminentException in a running job some seconds after SIGTERM, wherever
# the job is. A job marks the few steps that must not be cut in two (recording a paid answer and handing
# it to its SAVE job) with `uninterrupted()`: an exception due inside waits until that block has ended.

_depth = 0
_deferred: BaseException | None = None


@contextlib.contextmanager
def uninterrupted():
    """Steps the dyno's shutdown must not cut: the shutdown exception, if it comes meanwhile, is raised
    when the block ends — left by its end or by a `return` inside it — unless the block raised itself."""
    global _depth, _deferred
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
    if _depth == 0 and _deferred is not None:
        exc, _deferred = _deferred, None
        raise exc


def defer_shutdown(exc: BaseException) -> bool:
    """Called by the work-horse's shutdown handler: True when `exc` must wait for an `uninterrupted()`
    block to end, False when it is to be raised now."""
    global _deferred
    if _depth:
        _deferred = exc
        return True
    return False
