"""Check that downloaded bytes are a real, whole image and store them in the account's format.

The bytes come from a provider (or a URL it gave), so Pillow reads them with its guards on: only
PNG, JPEG and WebP decoders, the decompression-bomb limit, no truncated images; every image is fully
decoded. A PNG or WebP that is already in the account's format keeps its pixels as sent (a second
lossy encode would only lose quality, and costs most of a save's CPU) with its metadata chunks
dropped; everything else is re-encoded, which drops metadata too (some providers write the prompt
into PNG text).
"""

import hashlib
import io
import struct
import warnings
from dataclasses import dataclass

# The plugins of the three formats we accept are imported here rather than on first use: a forking
# worker imports this once, so its work-horses do not each pay ~50 ms for Pillow's lazy loading.
from PIL import (  # noqa: F401
    Image,
    ImageFile,
    ImageOps,
    JpegImagePlugin,
    PngImagePlugin,
    UnidentifiedImageError,
    WebPImagePlugin,
)

MAX_PIXELS = 40_000_000  # 40 MP: far above any provider's output, far below what exhausts a worker
ACCEPTED = ["PNG", "JPEG", "WEBP"]
FORMATS = {
    # account format → (Pillow format, content type, extension)
    "webp": ("WEBP", "image/webp", "webp"),
    "jpg": ("JPEG", "image/jpeg", "jpg"),
    "png": ("PNG", "image/png", "png"),
}
ALIASES = {"jpeg": "jpg"}
# The encoder quality of stored copies; providers are asked for the same (output_compression), so an
# answer already in the account's format needs no second encode.
ENCODE_QUALITY = {"jpg": 88, "webp": 85}

# Pillow warns above MAX_IMAGE_PIXELS and refuses above twice that; tighten, never loosen, its limit.
if not Image.MAX_IMAGE_PIXELS or Image.MAX_IMAGE_PIXELS > MAX_PIXELS:
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
ImageFile.LOAD_TRUNCATED_IMAGES = False


class ImageRejected(Exception):
    """The bytes are not an image we keep; `reason` is a sentence for staff."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class PreparedImage:
    data: bytes
    width: int
    height: int
    image_format: str  # "webp" | "jpg" | "png"
    content_type: str
    extension: str  # without the dot

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def prepare_image(data: bytes, image_format: str) -> PreparedImage:
    """`data` verified and re-encoded as `image_format`; raises ImageRejected with the reason."""
    image_format = ALIASES.get(image_format.lower(), image_format.lower())
    if image_format not in FORMATS:
        raise ValueError(f"unknown image format {image_format!r}; choose one of: {', '.join(FORMATS)}")
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise RuntimeError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES was turned on; truncated images would be kept")
    kind = sniff(data)
    try:
        with warnings.catch_warnings():
            # Between MAX_IMAGE_PIXELS and twice it Pillow only warns; a warning is a rejection here.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=ACCEPTED) as probe:
                _check_size(probe.size)
                probe.verify()  # checksums and structure, without decoding the pixels
            with Image.open(io.BytesIO(data), formats=ACCEPTED) as image:
                image.load()  # decodes everything: a truncated image fails here
                kept = _without_metadata(data, kind) if _keeps_as_sent(image, kind, image_format) else None
                if kept is not None:
                    _, content_type, extension = FORMATS[image_format]
                    return PreparedImage(data=kept, width=image.width, height=image.height,
                                         image_format=image_format, content_type=content_type, extension=extension)
                return _encode(image, image_format)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageRejected("the image is too large (decompression bomb limit)") from None
    except UnidentifiedImageError:
        if kind in ACCEPTED:
            raise ImageRejected(_damaged_reason(data, kind, "")) from None
        raise ImageRejected("the provider sent something that is not a PNG, JPEG or WebP image") from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as exc:
        raise ImageRejected(_damaged_reason(data, kind, str(exc))) from None


def sniff(data: bytes) -> str:
    """The kind the first bytes announce ("PNG", "JPEG", "WEBP"), or ImageRejected naming what it is."""
    if not data:
        raise ImageRejected("the provider sent an empty file, not an image")
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    head = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith(b"%pdf"):
        raise ImageRejected("the provider sent a PDF, not an image")
    if b"<svg" in head:
        raise ImageRejected("the provider sent SVG, which is not accepted")
    if head.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or b"<html" in head:
        raise ImageRejected("the provider sent HTML, not an image")
    if head.startswith((b"{", b"[")):
        raise ImageRejected("the provider sent JSON, not an image")
    if head.startswith(b"<"):
        raise ImageRejected("the provider sent XML or markup, not an image")
    if data.startswith((b"GIF87a", b"GIF89a")):
        raise ImageRejected("the provider sent GIF, which is not accepted")
    if data[4:8] == b"ftyp":
        raise ImageRejected("the provider sent AVIF or HEIC, which is not accepted")
    raise ImageRejected("the provider sent something that is not a PNG, JPEG or WebP image")


def _check_size(size: tuple[int, int]) -> None:
    # Checked from the header, before any pixel is decoded, whatever Pillow's global limit is.
    width, height = size
    if width <= 0 or height <= 0:
        raise ImageRejected("the image has no pixels")
    if width * height > MAX_PIXELS:
        raise ImageRejected("the image is too large (decompression bomb limit)")


def _damaged_reason(data: bytes, kind: str, message: str) -> str:
    if "truncat" in message.lower() or _ends_early(data, kind):
        return "the image is truncated"
    return f"the {kind} image is damaged and cannot be decoded"


def _ends_early(data: bytes, kind: str) -> bool:
    if kind == "PNG":
        return b"IEND" not in data[-16:]
    if kind == "JPEG":
        return not data.rstrip(b"\x00").endswith(b"\xff\xd9")
    if kind == "WEBP":
        return len(data) < 12 or struct.unpack("<I", data[4:8])[0] + 8 > len(data)
    return False


# Chunks that carry pixels, colour or layout; anything else (text, EXIF, XMP, dates) is dropped.
PNG_KEPT = {b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"iCCP", b"sBIT", b"pHYs",
            b"bKGD"}
WEBP_KEPT = {b"VP8 ", b"VP8L", b"VP8X", b"ALPH", b"ICCP"}
_VP8X_EXIF, _VP8X_XMP, _VP8X_ANIMATION = 0x08, 0x04, 0x02


def _keeps_as_sent(image: Image.Image, kind: str, image_format: str) -> bool:
    """Already the account's (lossless-to-keep) format, one frame, no EXIF rotation to apply."""
    orientation = image.getexif().get(0x0112, 1)
    return (FORMATS[image_format][0] == kind and kind in ("PNG", "WEBP")
            and getattr(image, "n_frames", 1) == 1 and orientation == 1)


def _without_metadata(data: bytes, kind: str) -> bytes | None:
    """`data` with its metadata chunks removed, or None when its layout is not the plain one expected."""
    try:
        return _png_without_metadata(data) if kind == "PNG" else _webp_without_metadata(data)
    except (struct.error, ValueError):
        return None


def _png_without_metadata(data: bytes) -> bytes:
    kept, offset = [data[:8]], 8
    while offset < len(data):
        length, kind = struct.unpack(">I4s", data[offset:offset + 8])
        end = offset + 12 + length  # length, type, data, CRC
        if end > len(data):
            raise ValueError("chunk runs past the end")
        if kind in PNG_KEPT:
            kept.append(data[offset:end])
        offset = end
        if kind == b"IEND":
            break
    return b"".join(kept)


def _webp_without_metadata(data: bytes) -> bytes:
    riff_size = struct.unpack("<I", data[4:8])[0]
    kept, offset, end_of_file = [], 12, min(len(data), 8 + riff_size)
    while offset < end_of_file:
        kind, length = struct.unpack("<4sI", data[offset:offset + 8])
        end = offset + 8 + length + (length & 1)  # chunks are padded to an even size
        if end > len(data):
            raise ValueError("chunk runs past the end")
        chunk = data[offset:end]
        if kind == b"VP8X":
            flags = chunk[8]
            if flags & _VP8X_ANIMATION:
                raise ValueError("animated")
            chunk = chunk[:8] + bytes([flags & ~(_VP8X_EXIF | _VP8X_XMP)]) + chunk[9:]
        if kind in WEBP_KEPT:
            kept.append(chunk)
        offset = end
    body = b"WEBP" + b"".join(kept)
    return b"RIFF" + struct.pack("<I", len(body)) + body


# The formats' own limits on a side (WebP stores 14-bit sizes, JPEG 16-bit).
MAX_SIDE = {"webp": 16383, "jpg": 65535}


def _encode(image: Image.Image, image_format: str) -> PreparedImage:
    pillow_format, content_type, extension = FORMATS[image_format]
    limit = MAX_SIDE.get(image_format)
    if limit and max(image.size) > limit:
        raise ImageRejected(f"the image is {image.width}x{image.height}, too large for {image_format.upper()}, which "
                            f"allows at most {limit} pixels a side; choose another format or a smaller size")
    # EXIF is not copied to the output, so apply its rotation to the pixels first.
    image = ImageOps.exif_transpose(image)
    has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    buffer = io.BytesIO()
    if image_format == "jpg":
        if has_alpha:
            # JPEG has no alpha: flatten onto white, as a browser shows a transparent PNG on a page.
            rgba = image.convert("RGBA")
            image = Image.new("RGB", rgba.size, (255, 255, 255))
            image.paste(rgba, mask=rgba.getchannel("A"))
        else:
            image = image.convert("RGB")
        image.save(buffer, "JPEG", quality=ENCODE_QUALITY["jpg"], optimize=True)
    else:
        image = image.convert("RGBA" if has_alpha else "RGB")
        if image_format == "webp":
            # method 2: half the CPU of the default 4 for files ~4 % larger (measured on 1024² images);
            # saves share the worker machine's cores with the provider chains.
            image.save(buffer, "WEBP", quality=ENCODE_QUALITY["webp"], method=2)
        else:
            image.save(buffer, "PNG", optimize=False)  # optimize=True costs seconds for a few % smaller
    return PreparedImage(data=buffer.getvalue(), width=image.width, height=image.height,
                         image_format=image_format, content_type=content_type, extension=extension)
