"""Twelve-factor configuration shared by the web app, the worker and the CLI.

Every setting comes from the environment; the embedded defaults (a SQLite file, an embedded Redis,
files under instance/) let the service run on a fresh machine with nothing configured.
"""

import base64
import datetime as dt
import hashlib
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def _instance_path() -> Path:
    path = Path(os.environ.get("INSTANCE_PATH", ROOT / "instance")).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def _kept_secret(instance: Path, name: str, make) -> str:
    """A development secret generated once and kept in instance/, so restarts keep sessions and keys."""
    path = instance / name
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(make())
    return path.read_text().strip()


def _fernet_key_from(secret_key: str) -> str:
    """Without ENCRYPTION_KEYS, a Fernet key derived from SECRET_KEY: web and worker dynos share
    SECRET_KEY, so they agree on the key with nothing more to configure."""
    digest = hashlib.sha256(b"provider-key-encryption:" + secret_key.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()


def _bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _hours(name: str, default: float) -> float:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    try:
        hours = float(value)
    except ValueError:
        hours = None
    if hours is None or not 0 <= hours < 24 * 365 * 10:  # nan and inf fail the comparison too
        raise ValueError(f"{name} is {value!r}; give a number of hours from 0 (e.g. 168 for a week)")
    return hours


@dataclass(frozen=True)
class Config:
    instance_path: Path
    database_url: str
    redis_url: str | None  # None: run the embedded Redis
    secret_key: str
    # Newest first: encrypt with the first, decrypt with any (key rotation).
    encryption_keys: tuple[str, ...]
    media_root: Path
    storage_backend: str  # "files", "database" or "s3"
    queue_name: str = "images"
    # STORAGE_BACKEND=s3. No credentials here: boto3 reads AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY
    # itself, so they are never in this object's repr or a log line.
    s3_bucket: str | None = None
    s3_prefix: str = ""
    s3_region: str | None = None
    s3_endpoint_url: str | None = None  # any S3-compatible store: R2, MinIO, a local server
    media_public_base_url: str | None = None  # the bucket's public URL or a CDN in front of it
    # How long a regenerated image's old public URL (/p/<key>) keeps answering: pages published with it
    # have that long to pick up the new one before the old URL and its file are removed.
    public_url_grace_hours: float = 24 * 7
    extra: dict = field(default_factory=dict)

    @property
    def embedded_redis_socket(self) -> Path:
        return self.instance_path / "redis.sock"

    @property
    def public_url_grace(self) -> dt.timedelta:
        return dt.timedelta(hours=self.public_url_grace_hours)

    @property
    def database_label(self) -> str:
        return self.database_url.split("://", 1)[0]


def load_config() -> Config:
    """Read the environment once; call again to pick up changes (tests do)."""
    instance = _instance_path()
    database_url = os.environ.get("DATABASE_URL") or f"sqlite:///{instance / 'app.sqlite3'}"
    if database_url.startswith("postgres://"):
        # Heroku still hands out postgres://; peewee's db_url knows postgresql://.
        database_url = "postgresql://" + database_url[len("postgres://"):]
    secret_key = os.environ.get("SECRET_KEY") or _kept_secret(
        instance, "secret_key", lambda: secrets.token_hex(32)
    )
    keys = os.environ.get("ENCRYPTION_KEYS") or _fernet_key_from(secret_key)
    media_root = Path(os.environ.get("MEDIA_ROOT") or instance / "media").resolve()
    default_backend = "files" if not os.environ.get("DATABASE_URL") else "database"
    return Config(
        instance_path=instance,
        database_url=database_url,
        redis_url=os.environ.get("REDIS_URL") or None,
        secret_key=secret_key,
        encryption_keys=tuple(k.strip() for k in keys.split(",") if k.strip()),
        media_root=media_root,
        storage_backend=os.environ.get("STORAGE_BACKEND", default_backend),
        queue_name=os.environ.get("RQ_QUEUE", "images"),
        s3_bucket=os.environ.get("S3_BUCKET") or None,
        s3_prefix=os.environ.get("S3_PREFIX", ""),
        # AWS_DEFAULT_REGION is what boto3 and the AWS CLI read; S3_REGION wins for this bucket alone.
        s3_region=os.environ.get("S3_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None,
        s3_endpoint_url=os.environ.get("S3_ENDPOINT_URL") or None,
        media_public_base_url=os.environ.get("MEDIA_PUBLIC_BASE_URL") or None,
        public_url_grace_hours=_hours("PUBLIC_URL_GRACE_HOURS", 24 * 7),
        extra={"secure_cookies": _bool("SESSION_COOKIE_SECURE", False),
               "session_idle_minutes": int(os.environ.get("SESSION_IDLE_MINUTES") or 12 * 60)},
    )
