"""Where image bytes are kept: files under MEDIA_ROOT, or rows in the database (dynos share no disk).

Both backends take the same keys ("acct-3/images/17-<hash>.webp") and answer the same way, so an
object store can be added later as a third class and one entry in BACKENDS.
"""

import abc
import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from models import ImageBlob, db, utcnow

# Segments start with a letter or digit, so "", ".", ".." and hidden names never pass.
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*")
_KEY_MAX = 300  # ImageBlob.key's column
_TYPES = {"webp": "image/webp", "jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png"}


class NotStored(LookupError):
    """Nothing is stored under the key."""


class InvalidKey(ValueError):
    """A key that could name something outside the store."""


@dataclass(frozen=True)
class StoredObject:
    data: bytes
    content_type: str
    etag: str


def etag_for(data: bytes) -> str:
    """A strong ETag: the same bytes give the same tag whichever backend holds them."""
    return hashlib.sha256(data).hexdigest()[:32]


def image_key(account_id: int, image_id: int, digest: str, extension: str) -> str:
    """A new key for new content, so caches never serve stale bytes and the old object can be deleted
    only once the new one is stored."""
    extension = extension.lstrip(".").lower()
    if not re.fullmatch(r"[0-9a-f]{16,}", digest or ""):
        raise ValueError("digest must be a lowercase hex string of at least 16 characters")
    if extension not in _TYPES:
        raise ValueError(f"unknown image extension {extension!r}")
    return f"acct-{int(account_id)}/images/{int(image_id)}-{digest[:16]}.{extension}"


def answer_key(account_id: int, image_id: int, task_id: str) -> str:
    """Where a provider's answer waits for its SAVE job: one per image and task, so a re-run of the
    call overwrites it rather than adding another."""
    if not re.fullmatch(r"[0-9a-f]{16,64}", task_id or ""):
        raise ValueError("task_id must be a lowercase hex string")
    return f"acct-{int(account_id)}/staging/{int(image_id)}-{task_id}.answer"


def check_key(key: str) -> str:
    if not isinstance(key, str) or len(key) > _KEY_MAX or not _KEY.fullmatch(key):
        raise InvalidKey(f"invalid storage key {key!r}: use relative paths of letters, digits, '.', '_', '-'")
    return key


class Storage(abc.ABC):
    name: str

    @abc.abstractmethod
    def save(self, key: str, data: bytes, content_type: str) -> None:
        """Store `data` under `key`, replacing what was there; readers see the old or the new, whole."""

    @abc.abstractmethod
    def load(self, key: str) -> StoredObject:
        """The stored object; raises NotStored."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; a missing one is fine."""


class FileStorage(Storage):
    """One file per key under `root`. The content type follows the key's extension, so no sidecar."""

    name = "files"

    def __init__(self, root: Path):
        self.root = Path(root).resolve()

    def path_for(self, key: str) -> Path:
        path = (self.root / check_key(key)).resolve()
        # resolve() follows symlinks: a linked folder pointing out of root is refused too.
        if not path.is_relative_to(self.root) or path == self.root:
            raise InvalidKey(f"invalid storage key {key!r}: it leads outside the media folder")
        return path

    def save(self, key, data, content_type):
        path = self.path_for(key)
        if content_type != _type_for(key):
            raise ValueError(f"content type {content_type!r} does not match the key's extension ({key})")
        path.parent.mkdir(parents=True, exist_ok=True)
        # A temporary file in the same folder, then an atomic rename: a crash never leaves half an image.
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())  # the bytes are on disk before the name points at them
            os.replace(temp, path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)

    def load(self, key):
        path = self.path_for(key)
        try:
            data = path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise NotStored(key) from None
        # Hashing what was just read costs well under a millisecond per image: no cache to go stale.
        return StoredObject(data=data, content_type=_type_for(key), etag=etag_for(data))

    def delete(self, key):
        self.path_for(key).unlink(missing_ok=True)


class DatabaseStorage(Storage):
    """Rows of ImageBlob, on the caller's connection (a job's `db.connection_context()`)."""

    name = "database"

    def save(self, key, data, content_type):
        check_key(key)
        with db.atomic():
            # One statement on SQLite and PostgreSQL alike: INSERT … ON CONFLICT (key) DO UPDATE.
            (ImageBlob
             .insert(key=key, data=data, content_type=content_type, created_at=utcnow())
             .on_conflict(conflict_target=[ImageBlob.key],
                          preserve=[ImageBlob.data, ImageBlob.content_type, ImageBlob.created_at])
             .execute())

    def load(self, key):
        check_key(key)
        row = (ImageBlob.select(ImageBlob.data, ImageBlob.content_type)
               .where(ImageBlob.key == key).first())
        if row is None:
            raise NotStored(key)
        data = bytes(row.data)  # PostgreSQL's driver hands back a memoryview
        return StoredObject(data=data, content_type=row.content_type, etag=etag_for(data))

    def delete(self, key):
        check_key(key)
        with db.atomic():
            ImageBlob.delete().where(ImageBlob.key == key).execute()


# STORAGE_BACKEND → how to build it from the config. An object store is one more entry here.
BACKENDS = {
    "files": lambda config: FileStorage(config.media_root),
    "database": lambda config: DatabaseStorage(),
}


def get_storage(config) -> Storage:
    try:
        build = BACKENDS[config.storage_backend]
    except KeyError:
        raise ValueError(f"STORAGE_BACKEND is {config.storage_backend!r}; "
                         f"choose one of: {', '.join(BACKENDS)}") from None
    return build(config)


def _type_for(key: str) -> str:
    return _TYPES.get(key.rsplit(".", 1)[-1].lower(), "application/octet-stream")


def _fsync_dir(path: Path) -> None:
    # Makes the rename itself durable; some filesystems do not allow opening a folder.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
