"""Image bytes for the fakes: real PNG/JPEG/WEBP at the asked size, and the wrong things servers send."""

import hashlib
import io
import random
from functools import lru_cache

from PIL import Image

FORMATS = {"png": ("PNG", "image/png"), "jpeg": ("JPEG", "image/jpeg"), "jpg": ("JPEG", "image/jpeg"),
           "webp": ("WEBP", "image/webp")}

NOT_IMAGES = {
    "html": (b"<!DOCTYPE html><html><head><title>Access denied</title></head><body>Blocked</body></html>",
             "text/html"),
    "svg": (b'<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"><script>alert(1)</script>'
            b'<rect width="64" height="64" fill="red"/></svg>', "image/svg+xml"),
    "pdf": (b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n", "application/pdf"),
}


def make_image(width: int, height: int, fmt: str = "png", seed: str = "") -> tuple[bytes, str]:
    """A flat-colour image (one of 64 colours, picked by `seed`) in `fmt`; returns (bytes, content type)."""
    digest = hashlib.sha256(seed.encode()).digest()
    return _encoded(width, height, fmt.lower(), _colour(digest[0]))


@lru_cache(maxsize=8)
def photo_sized(width: int, height: int, fmt: str = "png") -> tuple[bytes, str]:
    """An image as large in bytes as a real provider's answer (about 2 MB at 1536x1024): noise in the
    top half, which no encoder can shrink, over a flat bottom half."""
    pil_format, content_type = FORMATS[fmt]
    image = Image.new("RGB", (width, height), (90, 120, 150))
    rng = random.Random(f"{width}x{height}")
    noise = Image.frombytes("RGB", (width, height // 2), rng.randbytes(width * (height // 2) * 3))
    image.paste(noise, (0, 0))
    options = {"WEBP": {"method": 0, "quality": 90}, "PNG": {"compress_level": 1}}.get(pil_format, {})
    buffer = io.BytesIO()
    image.save(buffer, pil_format, **options)
    return buffer.getvalue(), content_type


def prepare_images(width: int, height: int, fmt: str) -> None:
    """Make every colour's image now, so that no timed call pays for encoding one (the benchmark)."""
    for index in range(64):
        _encoded(width, height, fmt, _colour(index))


def _colour(index: int) -> tuple:
    return tuple(64 + (index >> (2 * n) & 3) * 60 for n in range(3))


@lru_cache(maxsize=256)
def _encoded(width: int, height: int, fmt: str, colour: tuple) -> tuple[bytes, str]:
    # Made once per size, format and colour, with the encoders' fastest settings: encoding holds the
    # GIL, and a fake that spends 40-140 ms of it per answer delays its other calls' handling, which
    # the benchmark would charge to the service.
    pil_format, content_type = FORMATS[fmt]
    options = {"WEBP": {"method": 0}, "PNG": {"compress_level": 1}}.get(pil_format, {})
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, pil_format, **options)
    return buffer.getvalue(), content_type


def truncated(data: bytes) -> bytes:
    """The first half of an image: its header is fine, its pixels are missing."""
    return data[: max(16, len(data) // 2)]
