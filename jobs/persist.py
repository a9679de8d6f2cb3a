"""Database writes that must survive a dropped connection: the provider already answered (and
charged), so losing the save would lose a paid image."""

import contextlib
import logging
import time

from peewee import InterfaceError, OperationalError

from models import db

log = logging.getLogger(__name__)


def retry_on_disconnect(write, attempts: int = 5, delay: float = 0.5):
    for attempt in range(1, attempts + 1):
        try:
            return write()
        except (OperationalError, InterfaceError) as exc:
            if attempt == attempts:
                raise
            log.warning("database write failed (%s); reconnecting, attempt %d of %d", type(exc).__name__,
                        attempt + 1, attempts)
            if not db.is_closed():
                with contextlib.suppress(Exception):  # the connection is already broken
                    db.close()
            time.sleep(delay * attempt)
            db.connect(reuse_if_open=True)
    return None
