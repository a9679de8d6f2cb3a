"""Where image bytes are kept: files under MEDIA_ROOT, rows in the database, or objects in an
S3-compatible bucket (dynos share no disk; the last two work with any number of them).

All backends take the same keys ("acct-3/images/17-<hash>.webp") and answer the same way, so another
store is one more class and one entry in BACKENDS.
"""

import abc
import hashlib
import os
import re
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

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

    def public_url(self, key: str) -> str | None:
        """A login-free URL that serves the object straight from the store, or None when the store has
        none (files and database rows are only ever served by the app)."""
        check_key(key)
        return None

    def warm_up(self) -> None:
        """Load what the backend needs before a worker forks, so each work-horse starts warm."""
        return None  # files and database rows need nothing loaded


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


class S3Storage(Storage):
    """One object per key in an S3-compatible bucket (AWS S3, Cloudflare R2, MinIO, Bucketeer), under
    an optional prefix. Credentials come from boto3's own chain (AWS_ACCESS_KEY_ID /
    AWS_SECRET_ACCESS_KEY, a profile, an instance role): they never pass through this class or the
    config, so nothing here can log them."""

    name = "s3"

    def __init__(self, bucket: str | None, prefix: str = "", region: str | None = None,
                 endpoint_url: str | None = None, public_base_url: str | None = None):
        # Checked here, so a misconfigured dyno fails at get_storage() with the variable to fix rather
        # than with a botocore error on the first image.
        if not bucket:
            raise ValueError("STORAGE_BACKEND is 's3' but S3_BUCKET is not set: name the bucket to keep images in")
        prefix = (prefix or "").strip("/")
        if prefix and not _KEY.fullmatch(prefix):
            raise ValueError(f"S3_PREFIX {prefix!r} is not a folder-like path of letters, digits, '.', '_', '-'")
        for variable, url in (("S3_ENDPOINT_URL", endpoint_url), ("MEDIA_PUBLIC_BASE_URL", public_base_url)):
            if url and (urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc):
                raise ValueError(f"{variable} {url!r} is not an http(s):// URL")
        self.bucket = bucket
        self.prefix = f"{prefix}/" if prefix else ""
        self.region = region or None
        self.endpoint_url = endpoint_url or None
        self.public_base_url = public_base_url.rstrip("/") if public_base_url else None

    def object_key(self, key: str) -> str:
        return self.prefix + check_key(key)

    def client(self):
        return _s3_client(self.region, self.endpoint_url)

    def save(self, key, data, content_type):
        name = self.object_key(key)
        if content_type != _type_for(key):
            raise ValueError(f"content type {content_type!r} does not match the key's extension ({key})")
        # One PUT: S3 never shows half an object, so readers see the old bytes or the new, whole.
        # Image keys change with their content (image_key), so a CDN in front of a public bucket may
        # keep them for good; staging answers are read once by a job and never cached.
        cache = "public, max-age=31536000, immutable" if content_type.startswith("image/") else "no-store"
        self.client().put_object(Bucket=self.bucket, Key=name, Body=data, ContentType=content_type,
                                 CacheControl=cache)

    def load(self, key):
        from botocore.exceptions import ClientError

        name = self.object_key(key)
        try:
            answer = self.client().get_object(Bucket=self.bucket, Key=name)
        except ClientError as exc:
            # NoSuchKey from GET; some S3-compatible stores answer a bare 404 instead.
            if _s3_error_code(exc) in ("NoSuchKey", "404", "NotFound"):
                raise NotStored(key) from None
            raise  # a missing bucket or refused credentials is a configuration error, not a missing image
        with answer["Body"] as body:
            data = body.read()
        # The type follows the key, as for files: some stores answer binary/octet-stream for objects
        # another tool uploaded, and the ETag is ours, not the store's (multipart uploads change it).
        return StoredObject(data=data, content_type=_type_for(key), etag=etag_for(data))

    def delete(self, key):
        from botocore.exceptions import ClientError

        name = self.object_key(key)
        try:
            self.client().delete_object(Bucket=self.bucket, Key=name)
        except ClientError as exc:
            # S3 answers 204 for a missing key; a few compatible stores answer NoSuchKey.
            if _s3_error_code(exc) not in ("NoSuchKey", "404", "NotFound"):
                raise

    def public_url(self, key):
        name = self.object_key(key)
        if not self.public_base_url:
            return None
        # The base is the bucket's root (a CDN in front of it, or the bucket's own public URL), so the
        # prefix is part of the path, as it is part of the object's key.
        return f"{self.public_base_url}/{quote(name)}"

    def warm_up(self):
        self.client()


# One boto3 session per process image, and one client per (process, region, endpoint). The session
# only holds loaded service models and resolved credentials, no sockets, so a forked work-horse keeps
# the worker's (a new client from it costs ~15 ms instead of ~200 ms); a client holds a connection
# pool, which must never be shared across fork(), so a new process always makes its own.
_s3_lock = threading.Lock()
_s3_session = None
_s3_clients: dict = {}


def _s3_client(region: str | None, endpoint_url: str | None):
    global _s3_session
    cache_key = (os.getpid(), region, endpoint_url)
    client = _s3_clients.get(cache_key)
    if client is not None:
        return client
    with _s3_lock:  # boto3 sessions are not thread-safe, and gunicorn threads may ask at once
        client = _s3_clients.get(cache_key)
        if client is None:
            # Imported here: boto3 costs ~0.35 s to import, which files and database deployments skip.
            import boto3
            from botocore.config import Config as BotoConfig

            if _s3_session is None:
                _s3_session = boto3.session.Session()
            for stale in [k for k in _s3_clients if k[0] != os.getpid()]:
                del _s3_clients[stale]  # the parent's clients, inherited by fork: never to be used here
            client = _s3_session.client("s3", region_name=region, endpoint_url=endpoint_url, config=BotoConfig(
                # A web request waits for these: fail in seconds, not botocore's default minutes.
                connect_timeout=5, read_timeout=30, retries={"mode": "standard", "max_attempts": 4},
                # A custom endpoint is an S3-compatible store (MinIO, R2, a local server) whose host
                # rarely has a DNS name per bucket; AWS itself keeps virtual-hosted addressing.
                s3={"addressing_style": "path" if endpoint_url else "auto"},
                # boto3 ≥ 1.36 adds CRC checksums to every upload by default, which several
                # S3-compatible stores reject; send them only where the API requires one.
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ))
            _s3_clients[cache_key] = client
    return client


def _reset_s3_after_fork() -> None:
    global _s3_lock
    # A lock held by another thread at fork() time would stay held in the child forever.
    _s3_lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_s3_after_fork)


def _s3_error_code(exc) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


# STORAGE_BACKEND → how to build it from the config.
BACKENDS = {
    "files": lambda config: FileStorage(config.media_root),
    "database": lambda config: DatabaseStorage(),
    "s3": lambda config: S3Storage(config.s3_bucket, prefix=config.s3_prefix, region=config.s3_region,
                                   endpoint_url=config.s3_endpoint_url,
                                   public_base_url=config.media_public_base_url),
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
