"""Articles and their images: the one place the API and the pages create, edit and delete them.

Every function takes the account: another account's article or image is NotFound, exactly like a
missing one. Bodies are stored sanitized (webapp.sanitize), so no reader has to clean them again.
"""

import logging
import re
import unicodedata
from dataclasses import dataclass

from peewee import Case, fn

from config import load_config
from jobs import image_settings
from jobs.errors import Conflict, NotFound, ValidationError
from jobs.storage import get_storage
from models import IMAGE_TYPES, Content, Images, PublicImage, db, utcnow
from webapp.sanitize import clean_body

log = logging.getLogger(__name__)

MAX_TITLE = 500
MAX_PROMPT = 8000
MAX_IMAGES = 50
MAX_BODY_BYTES = 500_000
MAX_ALT = 125
MAX_IMAGE_TITLE = 200
MAX_CAPTION = 1000
MAX_SLUG = 60
BODY_FORMATS = ("html", "markdown")
BUSY = ("queued", "generating")
CONTENT_FIELDS = ("title", "meta_title", "body")
IMAGE_FIELDS = ("prompt", "alt_text", "title", "caption", "position")


@dataclass(frozen=True)
class At:
    """Where a value was sent, for error messages: "" (the request itself), "articles[3].images[0]."
    or "line 7: " (a CSV row)."""

    prefix: str = ""

    def __call__(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def inside(self, name: str) -> "At":
        return At(f"{self.prefix}{name}.")

    @property
    def item(self) -> str:
        return self.prefix.rstrip(".: ")


def _text(value, name: str, limit: int, *, required: bool = False) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise ValidationError(f"{name} must be {'a non-empty' if required else 'a'} string.")
    if len(value) > limit:
        raise ValidationError(f"{name} is {len(value)} characters; at most {limit} are allowed.")
    return value.strip()


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def max_in_article(account_id: int) -> int:
    """How many in-article images the account's settings allow (positions 1..this)."""
    view = image_settings.public_view(image_settings.settings_row(account_id))
    return int(view["max_in_article_images"])


def slugify(title: str) -> str:
    """Lowercase ASCII words joined by '-', cut at a word boundary to at most MAX_SLUG characters."""
    ascii_text = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode().lower()
    words = re.findall(r"[a-z0-9]+", ascii_text.replace("'", ""))
    slug = ""
    for word in words:
        longer = f"{slug}-{word}" if slug else word
        if len(longer) > MAX_SLUG:
            break
        slug = longer
    return slug or (words[0][:MAX_SLUG] if words else "")


def default_alt_text(prompt: str) -> str:
    """The prompt's first sentence, cut at a word boundary to fit an alt attribute (MAX_ALT)."""
    first = re.split(r"(?<=[.!?])\s+|\n\s*\n", (prompt or "").strip(), maxsplit=1)[0]
    text = " ".join(first.split())
    if len(text) > MAX_ALT:
        cut = text[:MAX_ALT + 1]
        space = cut.rfind(" ")
        text = cut[:space] if space > 0 else text[:MAX_ALT]
    return text.rstrip(" ,;:-")


# --- checking what was sent -----------------------------------------------------------------------

def _body(value, body_format, at: At) -> str:
    body_format = "html" if body_format is None else body_format
    if body_format not in BODY_FORMATS:
        raise ValidationError(f"{at('body_format')} must be one of: {', '.join(BODY_FORMATS)}.")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValidationError(f"{at('body')} must be a string.")
    size = len(value.encode("utf-8"))
    if size > MAX_BODY_BYTES:
        raise ValidationError(f"{at('body')} is {size:,} bytes; at most {MAX_BODY_BYTES:,} are allowed.")
    return clean_body(value, body_format)


def _position(value, image_type: str, at: At, max_in: int | None):
    """0 for a featured, desktop or mobile image; 1..max_in for an in-article one (None: the first
    free one, chosen later)."""
    if image_type != "in_article":
        if value is None or (_whole(value) and value == 0):
            return 0
        raise ValidationError(f"{at('position')} must be 0 for a {image_type} image (only in-article images "
                              "are numbered).")
    if value is None:
        return None
    top = max_in if max_in is not None else 100
    if not _whole(value) or not 1 <= value <= top:
        allowed = f"the {max_in} in-article images the settings allow" if max_in is not None else "in-article"
        raise ValidationError(f"{at('position')} must be a whole number from 1 to {top} ({allowed}).")
    return value


def _publishing(raw: dict, at: At) -> dict:
    """alt_text, title and caption, when sent (an alt text sent empty means "the default")."""
    fields = {}
    if "alt_text" in raw:
        alt = _text(raw["alt_text"], at("alt_text"), MAX_ALT)
        fields.update(alt_text=alt, alt_text_edited=bool(alt))
    if "title" in raw:
        fields["title"] = _text(raw["title"], at("title"), MAX_IMAGE_TITLE)
    if "caption" in raw:
        fields["caption"] = _text(raw["caption"], at("caption"), MAX_CAPTION) or None
    return fields


def _image_spec(raw, at: At, max_in: int | None) -> dict:
    if not isinstance(raw, dict):
        raise ValidationError(f"{at.item} must be an object.")
    image_type = raw.get("image_type")
    if image_type not in IMAGE_TYPES:
        raise ValidationError(f"{at('image_type')} must be one of: {', '.join(IMAGE_TYPES)}.")
    return {"image_type": image_type, "position": _position(raw.get("position"), image_type, at, max_in),
            "prompt": _text(raw.get("prompt"), at("prompt"), MAX_PROMPT), **_publishing(raw, at)}


def _check_slots(specs: list, ats: list) -> None:
    """One featured, desktop and mobile image per article, and each in-article position once; an
    in-article image sent without a position takes the first free one."""
    seen = {}
    for spec, at in zip(specs, ats, strict=True):
        if spec["position"] is None:
            continue
        slot = (spec["image_type"], spec["position"])
        if slot in seen:
            what = (f"the same in-article position {spec['position']}" if spec["image_type"] == "in_article"
                    else f"the same slot: an article has one {spec['image_type']} image")
            raise ValidationError(f"{at.item} and {seen[slot].item} share {what}.")
        seen[slot] = at
    taken = {position for kind, position in seen if kind == "in_article"}
    for spec in specs:
        if spec["position"] is None:
            spec["position"] = next(n for n in range(1, len(specs) + len(taken) + 2) if n not in taken)
            taken.add(spec["position"])


def check_article(data, at: At, max_in: int | None, image_at=None) -> dict:
    """A content create body, checked and cleaned (errors name where, through `at`); `max_in` None
    checks everything but the account's in-article limit. `image_at(n, raw)` names image n."""
    if not isinstance(data, dict):
        raise ValidationError(f"{at.item} must be an object." if at.item else "Send a JSON object.")
    title = _text(data.get("title"), at("title"), MAX_TITLE, required=True)
    meta_title = _text(data.get("meta_title"), at("meta_title"), MAX_TITLE)
    body = _body(data.get("body"), data.get("body_format"), at)
    images = data.get("images") or []
    if not isinstance(images, list) or len(images) > MAX_IMAGES:
        raise ValidationError(f"{at('images')} must be a list of at most {MAX_IMAGES} image prompts.")
    ats = [image_at(n, raw) if image_at else at.inside(f"images[{n}]") for n, raw in enumerate(images)]
    specs = [_image_spec(raw, where, max_in) for raw, where in zip(images, ats, strict=True)]
    _check_slots(specs, ats)
    if max_in is not None:  # a position filled in must fit the limit too
        for spec, where in zip(specs, ats, strict=True):
            _position(spec["position"], spec["image_type"], where, max_in)
    return {"title": title, "meta_title": meta_title, "body": body, "images": specs}


# --- articles -------------------------------------------------------------------------------------

def _new_image(account_id: int, content_id: int, spec: dict) -> Images:
    fields = {**spec, "alt_text_edited": bool(spec.get("alt_text_edited"))}
    if not fields["alt_text_edited"]:
        fields["alt_text"] = default_alt_text(spec["prompt"])
    return Images.create(account=account_id, content=content_id, **fields)


def create_checked(account_id: int, spec: dict) -> Content:
    """Create an article from check_article's result (the caller holds the transaction)."""
    content = Content.create(account=account_id, title=spec["title"], meta_title=spec["meta_title"],
                             body=spec["body"], slug=slugify(spec["title"]))
    if not content.slug:
        content.slug = f"article-{content.id}"
        content.save(only=[Content.slug])
    for image in spec["images"]:
        _new_image(account_id, content.id, image)
    return content


def create_content(account_id: int, data) -> Content:
    spec = check_article(data, At(), max_in_article(account_id))
    with db.atomic():
        return create_checked(account_id, spec)


def get_content(account_id: int, content_id: int) -> Content:
    content = Content.for_account(account_id).where(Content.id == content_id).first()
    if content is None:
        raise NotFound("Content not found.")
    return content


def get_image(account_id: int, image_id: int) -> Images:
    image = Images.for_account(account_id).where(Images.id == image_id).first()
    if image is None:
        raise NotFound("Image not found.")
    return image


def content_images(account_id: int, content_id: int):
    """An article's images in run order: featured, in-article by position, desktop, mobile."""
    return (Images.for_account(account_id).where(Images.content == content_id)
            .order_by(Images.type_rank(), Images.position, Images.id))


def images_of(account_id: int, content_ids: list) -> dict:
    """content id → its images in run order, for many articles in one query."""
    found = {content_id: [] for content_id in content_ids}
    if content_ids:
        query = (Images.for_account(account_id).where(Images.content.in_(list(content_ids)))
                 .order_by(Images.content, Images.type_rank(), Images.position, Images.id))
        for image in query:
            found[image.content_id].append(image)
    return found


def pending_with_prompts(account_id: int, content_ids: list) -> list[int]:
    """The pending images that have a prompt of those articles, in run order; NotFound names the
    articles that are missing (or another account's)."""
    found = {c.id for c in Content.for_account(account_id).select(Content.id).where(Content.id.in_(content_ids))}
    missing = [c for c in content_ids if c not in found]
    if missing:
        raise NotFound(f"No article with id {', '.join(map(str, missing))}.")
    query = (Images.for_account(account_id).select(Images.id)
             .where(Images.content.in_(content_ids) & (Images.status == "pending")
                    & (fn.TRIM(Images.prompt) != "")))
    return [row.id for row in Images.in_run_order(query)]


def _only(data, fields, also=()) -> None:
    if not isinstance(data, dict):
        raise ValidationError("Send a JSON object.")
    unknown = sorted(set(data) - set(fields) - set(also))
    if unknown:
        raise ValidationError(f"Unknown field {', '.join(map(repr, unknown))}; send any of: {', '.join(fields)}.")
    if not set(data) & set(fields):
        raise ValidationError(f"Nothing to change; send any of: {', '.join(fields)}.")


def update_content(account_id: int, content_id: int, data) -> Content:
    """Edit title, meta_title and/or body (a new title gives the article a new slug)."""
    content = get_content(account_id, content_id)
    _only(data, CONTENT_FIELDS, also=("body_format",))
    changes = {}
    if "title" in data:
        changes["title"] = _text(data["title"], "title", MAX_TITLE, required=True)
        if changes["title"] != content.title:
            changes["slug"] = slugify(changes["title"]) or f"article-{content.id}"
    if "meta_title" in data:
        changes["meta_title"] = _text(data["meta_title"], "meta_title", MAX_TITLE)
    if "body" in data:
        changes["body"] = _body(data["body"], data.get("body_format"), At())
    else:
        _body(None, data.get("body_format"), At())
    (Content.update(**changes, updated_at=utcnow())
     .where((Content.account == account_id) & (Content.id == content.id)).execute())
    return get_content(account_id, content_id)


def delete_content(account_id: int, content_id: int) -> None:
    """Delete an article and its images; refused (Conflict) while any of them is being generated."""
    with db.atomic():
        content = get_content(account_id, content_id)
        images = list(content_images(account_id, content.id))
        # The idle images go first: an image a request claims meanwhile stays, and is found below.
        (Images.delete().where((Images.account == account_id) & (Images.content == content.id)
                               & Images.status.not_in(BUSY)).execute())
        if Images.for_account(account_id).where(Images.content == content.id).exists():
            raise Conflict("Images of this article are being generated; delete it when they have finished.")
        Content.delete().where((Content.account == account_id) & (Content.id == content.id)).execute()
        _retire_public_urls(account_id, [i.id for i in images])
    _remove_files([i.file_path for i in images])


# --- images ---------------------------------------------------------------------------------------

def add_image(account_id: int, content_id: int, data) -> Images:
    """Add an image prompt to an article: one featured, desktop and mobile image each, in-article
    images at free positions 1..the settings' maximum (none given: the first free one)."""
    content = get_content(account_id, content_id)
    limit = max_in_article(account_id)
    if not isinstance(data, dict):
        raise ValidationError("Send a JSON object.")
    spec = _image_spec(data, At(), limit)
    with db.atomic():
        existing = list(content_images(account_id, content.id))
        if spec["image_type"] != "in_article":
            same = next((i for i in existing if i.image_type == spec["image_type"]), None)
            if same is not None:
                raise Conflict(f"The article already has a {spec['image_type']} image (image {same.id}); edit or "
                               "delete that one.")
        else:
            taken = {i.position: i for i in existing if i.image_type == "in_article"}
            if spec["position"] is None:
                free = [n for n in range(1, limit + 1) if n not in taken]
                if not free:
                    raise Conflict(f"The article already has the {limit} in-article images the settings allow.")
                spec["position"] = free[0]
            elif spec["position"] in taken:
                raise Conflict(f"In-article position {spec['position']} is taken (image "
                               f"{taken[spec['position']].id}); add the image at a free position, then move it.")
        return _new_image(account_id, content.id, spec)


def _new_position(image: Images, value, limit: int) -> int:
    if image.image_type != "in_article":
        if _whole(value) and value == image.position:
            return value
        raise ValidationError(f"Only in-article images have a position to change; a {image.image_type} image's "
                              f"is {image.position}.")
    if value is None:
        raise ValidationError(f"position must be a whole number from 1 to {limit}.")
    return _position(value, "in_article", At(), limit)


def update_image(account_id: int, image_id: int, data) -> Images:
    """Edit any of prompt, alt_text, title, caption, position. A prompt is refused (Conflict) while the
    image is being generated; a new prompt renews the default alt text unless a person wrote it; a
    position taken by another in-article image swaps the two."""
    _only(data, IMAGE_FIELDS)
    with db.atomic():
        image = get_image(account_id, image_id)
        changes = _publishing(data, At())
        prompt = _text(data["prompt"], "prompt", MAX_PROMPT, required=True) if "prompt" in data else image.prompt
        if "alt_text" in data and not changes["alt_text"]:
            changes["alt_text"] = default_alt_text(prompt)  # emptied: back to the default
        elif "alt_text" not in data and prompt != image.prompt:
            # Decided in the UPDATE itself, so an alt text a person saves meanwhile is never replaced.
            changes["alt_text"] = Case(None, [(Images.alt_text_edited, Images.alt_text)], default_alt_text(prompt))
        scope = (Images.account == account_id) & (Images.id == image.id)
        if "prompt" in data:
            changes["prompt"] = prompt
            scope &= Images.status.not_in(BUSY)
        swap = None
        if "position" in data:
            changes["position"] = _new_position(image, data["position"], max_in_article(account_id))
            if changes["position"] != image.position:
                swap = (Images.for_account(account_id)
                        .where((Images.content == image.content_id) & (Images.image_type == "in_article")
                               & (Images.position == changes["position"]) & (Images.id != image.id)).first())
        if not Images.update(**changes, updated_at=utcnow()).where(scope).execute():
            if "prompt" not in data:
                raise NotFound("Image not found.")  # deleted meanwhile
            raise Conflict("The image is being generated; edit its prompt when it has finished.")
        if swap is not None:
            Images.update(position=image.position, updated_at=utcnow()).where(Images.id == swap.id).execute()
    return get_image(account_id, image_id)


def update_prompt(account_id: int, image_id: int, prompt) -> Images:
    """Edit a prompt; refused while the image is being generated (409 in the API)."""
    return update_image(account_id, image_id, {"prompt": prompt})


def delete_image(account_id: int, image_id: int) -> None:
    """Delete an image (and its stored file); refused (Conflict) while it is being generated."""
    with db.atomic():
        image = get_image(account_id, image_id)
        deleted = (Images.delete().where((Images.account == account_id) & (Images.id == image.id)
                                         & Images.status.not_in(BUSY)).execute())
        if not deleted:
            raise Conflict("The image is being generated; delete it when it has finished.")
        _retire_public_urls(account_id, [image.id])
    _remove_files([image.file_path])


def _retire_public_urls(account_id: int, image_ids: list) -> None:
    """A deleted image's login-free URLs stop answering now (their files go with the expired ones)."""
    now = utcnow()
    (PublicImage.update(expires_at=now)
     .where((PublicImage.account == account_id) & PublicImage.image_id.in_(image_ids)
            & (PublicImage.expires_at.is_null() | (PublicImage.expires_at > now))).execute())


def _remove_files(paths: list) -> None:
    # After the commit, and best effort: the rows are gone either way, and a file left behind costs
    # only storage, while an error here would answer a delete that did happen as failed.
    paths = [p for p in paths if p]
    if not paths:
        return
    try:
        storage = get_storage(load_config())
        for path in paths:
            storage.delete(path)
    except Exception as exc:  # noqa: BLE001 - see above
        log.warning("stored files of deleted images were not removed (%s): %s", ", ".join(paths), exc)
