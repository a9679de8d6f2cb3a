"""An offline, free provider: a PNG that shows the prompt, so the whole flow runs without any API key."""

import functools
import hashlib
import io
from decimal import Decimal

from PIL import Image, ImageDraw, ImageFont

from jobs.providers import catalog
from jobs.providers.base import Credentials, ImageProvider, ImageRequest, ProviderImage


@functools.cache
def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def _wrap(text: str, font, width: float, max_lines: int) -> list[str]:
    """Greedy word wrap to `width` pixels; stops at max_lines and marks the cut with an ellipsis."""
    lines, line = [], ""
    # No more characters than could ever show: keeps a 32,000-character prompt fast.
    text = text[:max_lines * int(width / (font.size * 0.25))]
    for word in text.split():
        while len(lines) <= max_lines and font.getlength(word) > width:  # wider than the image: break it
            cut = max(1, int(len(word) * width / font.getlength(word)) - 1)
            if line:
                lines.append(line)
                line = ""
            lines.append(word[:cut])
            word = word[cut:]
        candidate = f"{line} {word}".strip()
        if font.getlength(candidate) <= width:
            line = candidate
        else:
            lines.append(line)
            line = word
        if len(lines) > max_lines:
            break
    if line:
        lines.append(line)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        while lines[-1] and font.getlength(lines[-1] + " …") > width:
            lines[-1] = lines[-1][:-1]
        lines[-1] = lines[-1].rstrip(" .") + " …"
    return lines


def render(prompt: str, width: int, height: int) -> bytes:
    """The same prompt and size always give the same bytes (no timestamps, no randomness)."""
    digest = hashlib.sha256(prompt.encode()).digest()
    background = tuple(48 + byte % 160 for byte in digest[:3])
    luminance = 0.299 * background[0] + 0.587 * background[1] + 0.114 * background[2]
    ink = (20, 20, 20) if luminance > 140 else (245, 245, 245)
    image = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(image)
    margin = width // 16
    draw.rectangle((margin // 2, margin // 2, width - margin // 2, height - margin // 2), outline=ink,
                   width=max(2, width // 256))
    title = _font(max(24, width // 12))
    draw.text((width / 2, height * 0.18), "PLACEHOLDER", font=title, fill=ink, anchor="mm")
    body = _font(max(14, width // 36))
    line_height = int(body.size * 1.3)
    top = int(height * 0.32)
    max_lines = max(1, (height - margin - top) // line_height)
    for number, line in enumerate(_wrap(prompt, body, width - 2 * margin, max_lines)):
        draw.text((width / 2, top + number * line_height), line, font=body, fill=ink, anchor="ma")
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=6)
    return buffer.getvalue()


class PlaceholderProvider(ImageProvider):
    name = "placeholder"
    label = "Placeholder"
    requires_api_key = False
    models = catalog.models_for("placeholder")

    def generate(self, request: ImageRequest, credentials: Credentials | None = None, *,
                 timeout: tuple[float, float] = (0, 0)) -> ProviderImage:
        self.check_request(request, credentials)
        return ProviderImage(data=render(request.prompt, request.width, request.height), cost=Decimal("0"))
