"""Image bytes for the fakes: real PNG/JPEG/WEBP at the asked size, and the wrong things servers send."""

import hashlib
import io

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
    """A flat-colour image (colour from `seed`) in `fmt`; returns (bytes, content type)."""
    pil_format, content_type = FORMATS[fmt.lower()]
    colour = tuple(hashlib.sha256(seed.encode()).digest()[:3])
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, pil_format)
    return buffer.getvalue(), content_type


def truncated(data: bytes) -> bytes:
    """The first half of an image: its header is fine, its pixels are missing."""
    return data[: max(16, len(data) // 2)]
