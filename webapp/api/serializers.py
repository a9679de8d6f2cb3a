"""The JSON shapes of the API's objects, and of a page of them."""

from urllib.parse import urlencode

from flask import request

from jobs.errors import ValidationError
from webapp.inputs import MAX_ID, is_id_text
from webapp.media import public_image_url


def image_json(image) -> dict:
    return {
        "id": image.id,
        "content_id": image.content_id,
        "image_type": image.image_type,
        "position": image.position,
        "prompt": image.prompt,
        "status": image.status,
        "image_url": image.image_url if image.status == "generated" or image.file_path else None,
        # Login-free, for publishing: the bucket's (or its CDN's) URL with STORAGE_BACKEND=s3 and
        # MEDIA_PUBLIC_BASE_URL; null otherwise, and until the image is generated.
        "public_url": public_image_url(image),
        "provider": image.provider,
        "model": image.model,
        "width": image.width,
        "height": image.height,
        "image_format": image.image_format,
        "revised_prompt": image.revised_prompt,
        "cost": float(image.cost) if image.cost is not None else None,
        "error": image.error,
        "provider_request_id": image.provider_request_id,
        "charge_uncertain": image.charge_uncertain,
        "alt_text": image.alt_text,
        "title": image.title,
        "caption": image.caption,
        "file_name": image.file_name,
        # Generated from a prompt that has been edited since.
        "out_of_date": image.out_of_date,
        "updated_at": _iso(image.updated_at),
    }


def content_json(content, images) -> dict:
    return {
        "id": content.id,
        "title": content.title,
        "meta_title": content.meta_title,
        "body": content.body,
        "images": [image_json(i) for i in images],
        "created_at": _iso(content.created_at),
        "updated_at": _iso(content.updated_at),
    }


def _iso(moment) -> str:
    return moment.isoformat() + "Z"


# --- pages of results -----------------------------------------------------------------------------

PER_PAGE = 20
MAX_PER_PAGE = 100


def _number(name: str, default: int, top: int) -> int:
    text = request.args.get(name)
    if text is None:
        return default
    if not is_id_text(text) or int(text) > top:
        raise ValidationError(f"{name} must be a whole number from 1 to {top}.")
    return int(text)


def page_request() -> tuple[int, int]:
    """`page` and `per_page` from the query string (1..MAX_PER_PAGE, PER_PAGE unless given)."""
    return _number("page", 1, MAX_ID), _number("per_page", PER_PAGE, MAX_PER_PAGE)


def page_json(query, page: int, per_page: int, render) -> dict:
    """One page of `query`: {"results", "count", "page", "per_page", "next"}, `next` being the URL of the
    next page (the same filters) or null on the last one. `render` turns the page's rows into JSON."""
    count = query.count()
    rows = list(query.paginate(page, per_page))
    next_url = None
    if page * per_page < count:
        args = request.args.to_dict(flat=False)
        args.update(page=[str(page + 1)], per_page=[str(per_page)])
        next_url = f"{request.base_url}?{urlencode(args, doseq=True)}"
    return {"results": render(rows), "count": count, "page": page, "per_page": per_page, "next": next_url}
