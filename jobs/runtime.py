"""What every job needs before it runs: the database bound to DATABASE_URL.

Jobs bind it themselves (not only worker.py), so that they also run under a plain `rq worker`
or inline in tests. Each job opens and closes its own connection around its work.
"""

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
