"""prepare_image: real Pillow encodes and decodes, no fakes."""

import io
import struct
import time
import zlib

import pytest
from PIL import Image, ImageFile

from jobs.storage.images import MAX_PIXELS, ImageRejected, prepare_image


def picture(size=(1536, 1024), mode="RGB") -> Image.Image:
    """Something photo-like: gradients with noise, so encoders work as they would on a real image."""
    width, height = size
    gradient = Image.linear_gradient("L").resize(size)
    noise = Image.effect_noise(size, 30)
    image = Image.merge("RGB", (gradient, noise, gradient.transpose(Image.Transpose.FLIP_LEFT_RIGHT)))
    if mode == "RGBA":
        image.putalpha(Image.linear_gradient("L").resize(size))
    return image


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def png_bomb(width: int, height: int) -> bytes:
    """A valid all-black 1-bit PNG: a few KB on disk, width x height pixels once decoded."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed pixels
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.mark.parametrize("source", ["PNG", "JPEG", "WEBP"])
@pytest.mark.parametrize("target, pillow_format, content_type",
                         [("webp", "WEBP", "image/webp"), ("jpg", "JPEG", "image/jpeg"), ("png", "PNG", "image/png")])
def test_it_converts_each_accepted_format_to_the_accounts_format(source, target, pillow_format, content_type):
    prepared = prepare_image(encode(picture(), source), target)
    assert (prepared.image_format, prepared.extension, prepared.content_type) == (target, target, content_type)
    assert (prepared.width, prepared.height) == (1536, 1024)
    with Image.open(io.BytesIO(prepared.data)) as reopened:
        assert reopened.format == pillow_format
        assert reopened.size == (1536, 1024)
        reopened.load()


def test_it_accepts_jpeg_as_another_name_for_jpg():
    assert prepare_image(encode(picture((40, 30)), "PNG"), "JPEG").image_format == "jpg"


def test_it_refuses_an_unknown_target_format():
    with pytest.raises(ValueError, match="choose one of: webp, jpg, png"):
        prepare_image(encode(picture((40, 30)), "PNG"), "gif")


def test_it_keeps_transparency_in_webp_and_png():
    source = encode(picture((64, 48), mode="RGBA"), "PNG")
    for target in ("webp", "png"):
        with Image.open(io.BytesIO(prepare_image(source, target).data)) as reopened:
            assert reopened.mode == "RGBA"


def test_it_flattens_transparency_onto_white_for_jpg():
    transparent = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    prepared = prepare_image(encode(transparent, "PNG"), "jpg")
    with Image.open(io.BytesIO(prepared.data)) as reopened:
        assert reopened.mode == "RGB"
        assert all(channel >= 250 for channel in reopened.getpixel((16, 16)))


def test_it_applies_the_exif_rotation_it_drops():
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    source = encode(picture((60, 40)), "JPEG", exif=exif)
    prepared = prepare_image(source, "webp")
    assert (prepared.width, prepared.height) == (40, 60)


def test_its_digest_is_the_sha256_of_the_output():
    import hashlib

    prepared = prepare_image(encode(picture((40, 30)), "PNG"), "png")
    assert prepared.digest == hashlib.sha256(prepared.data).hexdigest()


@pytest.mark.parametrize("source", ["PNG", "JPEG", "WEBP"])
def test_it_rejects_a_truncated_image(source):
    data = encode(picture((400, 300)), source)
    with pytest.raises(ImageRejected, match="^the image is truncated$"):
        prepare_image(data[: len(data) // 2], "webp")


def test_it_rejects_an_image_cut_off_inside_its_header():
    with pytest.raises(ImageRejected, match="^the image is truncated$"):
        prepare_image(encode(picture((40, 30)), "PNG")[:30], "webp")


SVG = "the provider sent SVG, which is not accepted"


@pytest.mark.parametrize("data, reason", [
    (b"<!DOCTYPE html><html><body>Expired</body></html>", "the provider sent HTML, not an image"),
    (b"\n  <html><head><title>403</title></head></html>", "the provider sent HTML, not an image"),
    (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>', SVG),
    (b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', SVG),
    (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj", "the provider sent a PDF, not an image"),
    (b'{"error": {"message": "expired"}}', "the provider sent JSON, not an image"),
    (b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", "the provider sent GIF, which is not accepted"),
    (b"", "the provider sent an empty file, not an image"),
    (b"\x00\x01\x02garbage" * 20, "the provider sent something that is not a PNG, JPEG or WebP image"),
])
def test_it_names_what_the_provider_sent_instead_of_an_image(data, reason):
    with pytest.raises(ImageRejected) as rejected:
        prepare_image(data, "webp")
    assert rejected.value.reason == reason


def test_it_rejects_a_format_outside_png_jpeg_and_webp_even_with_a_real_decoder():
    with pytest.raises(ImageRejected, match="GIF, which is not accepted"):
        prepare_image(encode(picture((40, 30)), "GIF"), "png")
    with pytest.raises(ImageRejected, match="not a PNG, JPEG or WebP"):
        prepare_image(encode(picture((40, 30)), "BMP"), "png")


def test_it_rejects_a_damaged_png():
    data = bytearray(encode(picture((64, 48)), "PNG"))
    data[40:60] = b"\xff" * 20  # inside IDAT: its checksum no longer matches
    with pytest.raises(ImageRejected, match="damaged|truncated"):
        prepare_image(bytes(data), "webp")


@pytest.mark.parametrize("width, height", [(6400, 6400), (30000, 30000)])
def test_it_rejects_a_decompression_bomb(width, height):
    # 41 MP: Pillow only warns, which is made a rejection; 900 MP: Pillow refuses outright.
    bomb = png_bomb(width, height)
    assert len(bomb) < 200_000
    with pytest.raises(ImageRejected, match=r"^the image is too large \(decompression bomb limit\)$"):
        prepare_image(bomb, "webp")


def test_it_rejects_a_decompression_bomb_even_if_pillows_limit_was_lifted_elsewhere(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    with pytest.raises(ImageRejected, match=r"^the image is too large \(decompression bomb limit\)$"):
        prepare_image(png_bomb(6400, 6400), "webp")


def test_pillows_own_limit_is_no_looser_than_40_megapixels():
    assert Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS <= MAX_PIXELS == 40_000_000


def test_it_refuses_to_run_if_truncated_images_were_allowed_elsewhere(monkeypatch):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(RuntimeError, match="LOAD_TRUNCATED_IMAGES"):
        prepare_image(encode(picture((40, 30)), "PNG"), "webp")


@pytest.mark.parametrize("target", ["webp", "jpg", "png"])
def test_converting_a_1536x1024_image_takes_well_under_a_second_or_two(target):
    source = encode(picture(), "PNG")
    started = time.perf_counter()
    prepare_image(source, target)
    assert time.perf_counter() - started < 2.0  # generous for slow CI; measured ~0.1–0.2 s locally


def test_pillows_bomb_warning_is_a_rejection_on_its_own(monkeypatch):
    from jobs.storage import images

    monkeypatch.setattr(images, "MAX_PIXELS", 10 ** 9)  # our own check out of the way
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 40_000_000)  # 41 MP is in Pillow's warning band
    with pytest.raises(ImageRejected, match="decompression bomb limit"):
        prepare_image(png_bomb(6400, 6400), "webp")


def test_a_webp_in_the_accounts_format_keeps_its_pixels_and_loses_its_metadata():
    exif = Image.Exif()
    exif[0x010E] = "prompt: a secret campaign"  # ImageDescription
    source = encode(picture((120, 80)), "WEBP", quality=70, exif=exif, xmp=b"<x:xmpmeta>prompt</x:xmpmeta>")
    assert b"EXIF" in source and b"XMP " in source
    prepared = prepare_image(source, "webp")
    assert b"EXIF" not in prepared.data and b"XMP " not in prepared.data and b"secret" not in prepared.data
    with Image.open(io.BytesIO(source)) as original, Image.open(io.BytesIO(prepared.data)) as kept:
        # the same lossy pixels, not a second encode of them
        assert kept.format == "WEBP" and kept.tobytes() == original.tobytes()
        assert not kept.getexif() and "xmp" not in kept.info


def test_a_png_in_the_accounts_format_keeps_its_pixels_and_loses_its_text():
    from PIL import PngImagePlugin

    text = PngImagePlugin.PngInfo()
    text.add_text("prompt", "a secret campaign")
    text.add_itxt("comment", "more of it", zip=True)
    source = encode(picture((64, 48), mode="RGBA"), "PNG", pnginfo=text)
    prepared = prepare_image(source, "png")
    assert b"secret" not in prepared.data and b"tEXt" not in prepared.data and b"iTXt" not in prepared.data
    with Image.open(io.BytesIO(source)) as original, Image.open(io.BytesIO(prepared.data)) as kept:
        assert kept.tobytes() == original.tobytes() and kept.mode == "RGBA" and not kept.text


def test_an_image_that_needs_rotating_is_re_encoded_even_in_the_accounts_format():
    exif = Image.Exif()
    exif[0x0112] = 6
    prepared = prepare_image(encode(picture((60, 40)), "WEBP", exif=exif), "webp")
    assert (prepared.width, prepared.height) == (40, 60) and b"EXIF" not in prepared.data


def test_an_animated_webp_is_re_encoded_as_its_first_frame():
    frames = [picture((40, 30)), picture((40, 30)).transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    source = encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=100)
    prepared = prepare_image(source, "webp")
    with Image.open(io.BytesIO(prepared.data)) as kept:
        assert getattr(kept, "n_frames", 1) == 1 and b"ANMF" not in prepared.data


def test_an_image_too_wide_for_webp_says_so_and_names_the_limit():
    # 20000x1000 is a valid PNG (20 MP, under the bomb limit) but WebP stores at most 16383 a side.
    buffer = io.BytesIO()
    Image.new("RGB", (20000, 1000), (10, 20, 30)).save(buffer, "PNG", compress_level=1)
    with pytest.raises(ImageRejected) as caught:
        prepare_image(buffer.getvalue(), "webp")
    assert caught.value.reason == ("the image is 20000x1000, too large for WEBP, which allows at most 16383 pixels a "
                                   "side; choose another format or a smaller size")
    assert prepare_image(buffer.getvalue(), "png").width == 20000  # PNG takes it
