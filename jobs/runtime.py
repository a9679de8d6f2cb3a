"""What every job needs before it runs: the database bound to DATABASE_URL.

Jobs bind it themselves (not only worker.py), so that they also run under a plain `rq worker`
or inline in tests. Each job opens and closes its own connection around its work.
"""

from config import load_config
from models import db, open_database


def ensure_database(config=None):
    if db.obj is None:
        open_database((config or load_config()).database_url)
    return db
