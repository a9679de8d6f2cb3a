"""The JSON shapes of the API's objects."""

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
        "updated_at": image.updated_at.isoformat() + "Z",
    }


def content_json(content, images) -> dict:
    return {
        "id": content.id,
        "title": content.title,
        "meta_title": content.meta_title,
        "images": [image_json(i) for i in images],
    }
