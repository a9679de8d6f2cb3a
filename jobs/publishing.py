"""Publishing a generated image: its SEO file name and its login-free URL (`/p/<key>.<ext>`).

A key is an HMAC, under SECRET_KEY, of the account, the image and the stored bytes' digest: the same
bytes give the same key (a re-run of a save changes nothing), new bytes a new one, and knowing one key
(or an image's id) tells nothing about another's. A regenerated image's old URL keeps answering for the
grace period (PUBLIC_URL_GRACE_HOURS), since pages published with it need time to pick up the new one;
`remove_expired`, from the worker's sweep, then removes it and its file.
"""

import hashlib
import hmac
import logging
import re
import unicodedata

from peewee import IntegrityError

from config import load_config
from jobs.storage import get_storage
from models import Images, PublicImage, db, utcnow

log = logging.getLogger(__name__)

KEY_LENGTH = 32  # hex characters: 128 bits
EXTENSIONS = {"image/webp": "webp", "image/jpeg": "jpg", "image/png": "png"}
SLOTS = {"featured": "featured", "desktop": "desktop", "mobile": "mobile"}
MAX_SLUG = 150  # room left in Images.file_name (255) for the slot, a -N and the extension
NAME_ATTEMPTS = 5
REMOVE_BATCH = 500  # per sweep; the rest waits for the next one


def public_key(secret_key: str, account_id: int, image_id: int, digest: str) -> str:
    message = f"public-image:{int(account_id)}:{int(image_id)}:{digest}".encode()
    return hmac.new(secret_key.encode(), message, hashlib.sha256).hexdigest()[:KEY_LENGTH]


def public_path(key: str, extension: str) -> str:
    return f"/p/{key}.{extension}"


def article_slug(content) -> str:
    """The article's slug as it may appear in a file name (letters, digits, dashes), or `article-<id>`."""
    text = unicodedata.normalize("NFKD", content.slug or "").encode("ascii", "ignore").decode().lower()
    slug = re.sub(r"[^a-z0-9]+", "-", text)[:MAX_SLUG].strip("-")
    return slug or f"article-{content.id}"


def file_stem(content, image) -> str:
    slot = SLOTS.get(image.image_type) or f"in-article-{int(image.position)}"
    return f"{article_slug(content)}-{slot}"


def free_file_name(account_id: int, image_id: int, stem: str, extension: str) -> str:
    """`<stem>.<ext>`, or with -2, -3… when another image of the account has it (the image's own name
    is not a clash, so a regenerated image keeps its name)."""
    taken = {row.file_name for row in Images.select(Images.file_name).where(
        (Images.account == account_id) & (Images.id != image_id) & Images.file_name.startswith(stem))}
    name, n = f"{stem}.{extension}", 1
    while name in taken:
        n += 1
        name = f"{stem}-{n}.{extension}"
    return name


def store(account_id: int, image, task_id: str, *, key: str, content_type: str, extension: str, grace,
          **fields) -> bool:
    """`Images.stored` with the image's file name, the prompt it was made from and its public URL, in
    one transaction (a save that loses the image to another task publishes nothing); False when the
    image was not this task's to store."""
    stem = file_stem(image.content, image)
    for attempt in range(1, NAME_ATTEMPTS + 1):
        name = free_file_name(account_id, image.id, stem, extension)
        try:
            with db.atomic():
                if not Images.stored(account_id, image.id, task_id, file_name=name, public_key=key, **fields):
                    return False
                publish(account_id, image.id, key=key, file_path=fields["file_path"], content_type=content_type,
                        grace=grace)
                return True
        except IntegrityError:
            # Another save of the account took the name between the look and the write.
            if attempt == NAME_ATTEMPTS:
                raise
    return False


def publish(account_id: int, image_id: int, *, key: str, file_path: str, content_type: str, grace,
            now=None) -> None:
    """`key` becomes the image's current URL; the ones before it expire after `grace`."""
    now = now or utcnow()
    # The same bytes stored again (a re-run, or a regeneration that made them again): the URL is current.
    (PublicImage.insert(key=key, account=account_id, image_id=image_id, file_path=file_path,
                        content_type=content_type, created_at=now)
     .on_conflict(conflict_target=[PublicImage.key], update={PublicImage.expires_at: None})
     .execute())
    (PublicImage.update(expires_at=now + grace)
     .where((PublicImage.account == account_id) & (PublicImage.image_id == image_id) & (PublicImage.key != key)
            & PublicImage.expires_at.is_null())
     .execute())


def lookup(key: str, now=None) -> PublicImage | None:
    """The row a public URL names, while it answers."""
    now = now or utcnow()
    return (PublicImage.select()
            .where((PublicImage.key == key) & (PublicImage.expires_at.is_null() | (PublicImage.expires_at > now)))
            .first())


def file_in_use(account_id: int, image_id: int, file_path: str, *, besides=None) -> bool:
    """Whether a public URL (other than the row `besides`) or the image itself still points at the file.
    A file belongs to one image (its key holds the image's id), so only that image's rows can."""
    rows = PublicImage.select().where((PublicImage.account == account_id) & (PublicImage.image_id == image_id)
                                      & (PublicImage.file_path == file_path))
    if besides is not None:
        rows = rows.where(PublicImage.id != besides)
    current = Images.select().where((Images.id == image_id) & (Images.file_path == file_path))
    return rows.exists() or current.exists()


def remove_expired(now=None, *, storage=None) -> int:
    """Delete the public URLs whose grace period has ended, and their files when nothing else uses them;
    how many were removed. Safe to run from several processes (each delete is conditional)."""
    now = now or utcnow()
    storage = storage or get_storage(load_config())
    expired = (PublicImage.select().where(PublicImage.expires_at <= now)
               .order_by(PublicImage.expires_at).limit(REMOVE_BATCH))
    removed = 0
    for row in list(expired):
        # The file first: a storage error leaves the row for the next sweep to try again, never a file
        # that nothing points at any more.
        if not file_in_use(row.account_id, row.image_id, row.file_path, besides=row.id):
            storage.delete(row.file_path)
        gone = (PublicImage.delete()
                .where((PublicImage.id == row.id) & (PublicImage.expires_at <= now)).execute())
        if gone:
            removed += 1
        else:
            log.warning("public URL row %s of image %s was published again while it was being removed", row.id,
                        row.image_id)
    if removed:
        log.info("removed %d expired public image URLs", removed)
    return removed
