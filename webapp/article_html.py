"""An article's body with its generated images in place: the HTML a site or a CMS publishes.

The body is stored sanitized, so it is never rewritten here: a parser only finds where its headings
and paragraphs end, and the figures are spliced in at those offsets. Every value put into the markup
is escaped.
"""

from html import escape
from html.parser import HTMLParser

from webapp.media import public_image_url

DESKTOP_MEDIA = "(min-width: 768px)"
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
# A paragraph or heading inside these is not one of the article's own: no image goes into a list,
# a quote or a table.
_CONTAINED = {"li", "ul", "ol", "dl", "dd", "dt", "blockquote", "table", "figure", "figcaption", "pre", "details",
              "aside", "p", "h1", "h2", "h3", "h4", "h5", "h6"}
# Start tags that end an open <p> (HTML's implied end tag), for bodies that leave it out.
_ENDS_P = {"address", "article", "aside", "blockquote", "details", "div", "dl", "figure", "footer", "h1", "h2",
           "h3", "h4", "h5", "h6", "header", "hr", "main", "nav", "ol", "p", "pre", "section", "table", "ul"}


class _Landmarks(HTMLParser):
    """The offsets just after each <h2> and each of the article's own paragraphs, in the source."""

    def __init__(self, source: str):
        super().__init__(convert_charrefs=False)
        self.source = source
        self.line_starts = [0] + [n + 1 for n, char in enumerate(source) if char == "\n"]
        self.open: list[str] = []
        self.headings: list[int] = []
        self.paragraphs: list[int] = []
        self.feed(source)
        self.close()

    def _here(self) -> int:
        line, column = self.getpos()
        return self.line_starts[line - 1] + column

    def _ended(self, tag: str, offset: int) -> None:
        if tag in ("h2", "p") and not _CONTAINED.intersection(self.open):
            (self.headings if tag == "h2" else self.paragraphs).append(offset)

    def handle_starttag(self, tag, attrs):
        if tag in _ENDS_P and self.open and self.open[-1] == "p":
            self.open.pop()
            self._ended("p", self._here())
        if tag not in _VOID:
            self.open.append(tag)

    def handle_endtag(self, tag):
        if tag not in self.open:
            return  # a stray end tag: nothing to close
        while self.open.pop() != tag:
            pass
        end = self.source.find(">", self._here())
        self._ended(tag, len(self.source) if end < 0 else end + 1)


def article_html(content, images, *, base_url: str) -> str:
    """The body with the featured image first (and the desktop/mobile pair as one <picture>), and
    in-article image k after the k-th <h2> — or the k-th paragraph when there are fewer headings, or at
    the end when there are fewer paragraphs too. Only generated images with a public URL appear."""
    body = content.body or ""
    # public_image_url is None for an image that is not generated (or has no public URL yet).
    placed = [(image, src) for image in images if (src := public_image_url(image, base_url=base_url))]
    by_type: dict[str, list] = {}
    for image, src in sorted(placed, key=lambda pair: (pair[0].position, pair[0].id)):
        by_type.setdefault(image.image_type, []).append((image, src))

    inserts = [(0, _figure(image, src)) for image, src in by_type.get("featured", [])]
    inserts += [(0, block) for block in _pictures(by_type.get("desktop", []), by_type.get("mobile", []))]
    landmarks = _Landmarks(body)
    previous = 0
    for image, src in by_type.get("in_article", []):
        offset = max(_offset_for(image.position, landmarks, len(body)), previous)
        previous = offset  # never before the image of a lower position: the images keep their order
        inserts.append((offset, _figure(image, src)))

    parts, start = [], 0
    for offset, block in inserts:  # already in offset order, and in order within one offset
        parts += [body[start:offset], "\n", block, "\n"]
        start = offset
    parts.append(body[start:])
    return "".join(parts)


def _offset_for(position: int, landmarks: _Landmarks, end: int) -> int:
    if position <= 0:
        return 0  # "after heading 0": the top, after the featured image
    if position <= len(landmarks.headings):
        return landmarks.headings[position - 1]
    if position <= len(landmarks.paragraphs):
        return landmarks.paragraphs[position - 1]
    return end


def _pictures(desktops: list, mobiles: list) -> list[str]:
    """Desktop and mobile images of the same position as one <picture>; one without its pair alone."""
    mobile_at = {image.position: (image, src) for image, src in mobiles}
    blocks, paired = [], set()
    for desktop, desktop_src in desktops:
        mobile = mobile_at.get(desktop.position)
        if mobile is None:
            blocks.append(_figure(desktop, desktop_src))
            continue
        paired.add(desktop.position)
        image, src = mobile
        source = f'<source media="{DESKTOP_MEDIA}" srcset="{escape(desktop_src)}"{_size(desktop)}>'
        blocks.append(_figcaptioned(f"<picture>{source}{_img(image, src)}</picture>", image.caption or desktop.caption))
    blocks += [_figure(image, src) for image, src in mobiles if image.position not in paired]
    return blocks


def _figure(image, src: str) -> str:
    return _figcaptioned(_img(image, src), image.caption)


def _figcaptioned(inner: str, caption) -> str:
    caption = (caption or "").strip()
    return f"<figure>{inner}<figcaption>{escape(caption)}</figcaption></figure>" if caption \
        else f"<figure>{inner}</figure>"


def _img(image, src: str) -> str:
    return f'<img src="{escape(src)}" alt="{escape(image.alt_text or "")}"{_size(image)} loading="lazy">'


def _size(image) -> str:
    if not (image.width and image.height):
        return ""
    return f' width="{int(image.width)}" height="{int(image.height)}"'
