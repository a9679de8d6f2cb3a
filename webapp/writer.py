"""Content and image prompts: the one place the API and the pages create and edit them."""

from jobs.errors import Conflict, NotFound, ValidationError
from models import IMAGE_TYPES, Content, Images, db, utcnow

MAX_TITLE = 500
MAX_PROMPT = 8000
MAX_IMAGES = 50


def _text(value, name: str, limit: int, *, required: bool = False) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise ValidationError(f"'{name}' must be {'a non-empty' if required else 'a'} string.")
    if len(value) > limit:
        raise ValidationError(f"'{name}' is {len(value)} characters; at most {limit} are allowed.")
    return value.strip()


def _image_spec(raw, index: int) -> dict:
    if not isinstance(raw, dict):
        raise ValidationError(f"images[{index}] must be an object.")
    image_type = raw.get("image_type")
    if image_type not in IMAGE_TYPES:
        raise ValidationError(f"images[{index}].image_type must be one of: {', '.join(IMAGE_TYPES)}.")
    position = raw.get("position", 0)
    if isinstance(position, bool) or not isinstance(position, int) or not 0 <= position <= 100:
        raise ValidationError(f"images[{index}].position must be a whole number from 0 to 100.")
    prompt = _text(raw.get("prompt"), f"images[{index}].prompt", MAX_PROMPT)
    return {"image_type": image_type, "position": position, "prompt": prompt}


def create_content(account_id: int, data) -> Content:
    if not isinstance(data, dict):
        raise ValidationError("Send a JSON object.")
    title = _text(data.get("title"), "title", MAX_TITLE, required=True)
    meta_title = _text(data.get("meta_title"), "meta_title", MAX_TITLE)
    images = data.get("images", [])
    if not isinstance(images, list) or len(images) > MAX_IMAGES:
        raise ValidationError(f"'images' must be a list of at most {MAX_IMAGES} image prompts.")
    specs = [_image_spec(raw, n) for n, raw in enumerate(images)]
    slots = [(s["image_type"], s["position"]) for s in specs]
    if len(set(slots)) != len(slots):
        raise ValidationError("Two images share the same image_type and position.")
    with db.atomic():
        content = Content.create(account=account_id, title=title, meta_title=meta_title)
        for spec in specs:
            Images.create(account=account_id, content=content, **spec)
    return content


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
    return (Images.for_account(account_id).where(Images.content == content_id)
            .order_by(Images.image_type != "featured", Images.image_type, Images.position, Images.id))


def update_prompt(account_id: int, image_id: int, prompt) -> Images:
    """Edit a prompt; refused while the image is being generated (409 in the API)."""
    image = get_image(account_id, image_id)
    prompt = _text(prompt, "prompt", MAX_PROMPT, required=True)
    updated = (Images.update(prompt=prompt, updated_at=utcnow())
               .where((Images.id == image.id) & Images.status.not_in(["queued", "generating"])).execute())
    if not updated:
        raise Conflict("The image is being generated; edit its prompt when it has finished.")
    return get_image(account_id, image_id)

