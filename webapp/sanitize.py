"""Article bodies as stored: HTML cut down to what an article needs (Markdown converted first).

Bodies are cleaned once, when they are written, so every reader (the pages, the HTML endpoint, the
export) gets the same safe HTML and none of them has to remember to clean it.
"""

import re

import nh3
from markdown_it import MarkdownIt

TAGS = {
    "p", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "li", "a", "strong", "em", "b", "i", "u", "s",
    "blockquote", "code", "pre", "br", "hr", "figure", "figcaption", "img", "table", "thead", "tbody", "tr",
    "th", "td", "span",
}
ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "width", "height"},
    "th": {"colspan", "rowspan"},
    "td": {"colspan", "rowspan"},
}
# Their content goes too: the text inside a script or an embedded frame is not part of the article.
DROPPED_WITH_CONTENT = {"script", "style", "iframe", "frame", "frameset", "noscript", "object", "embed",
                        "applet", "template", "svg", "math", "textarea", "select"}
# Links may also be relative ("/about", "#notes"); images must be absolute http(s) URLs, because the
# article is published on other sites, where a relative or data: source means nothing good.
LINK_SCHEMES = {"http", "https", "mailto"}
_ABSOLUTE_HTTP = re.compile(r"https?://[^\s/]", re.IGNORECASE)
_DIMENSION = re.compile(r"[0-9]{1,5}")


def _attribute(tag: str, name: str, value: str) -> str | None:
    if tag == "img" and name == "src":
        return value if _ABSOLUTE_HTTP.match(value) else None
    if tag == "img" and name in ("width", "height"):
        return value if _DIMENSION.fullmatch(value.strip()) else None
    if name in ("colspan", "rowspan"):
        return value if _DIMENSION.fullmatch(value.strip()) and 0 < int(value) <= 1000 else None
    return value


_cleaner = nh3.Cleaner(
    tags=TAGS,
    clean_content_tags=DROPPED_WITH_CONTENT,
    attributes=ATTRIBUTES,
    tag_attribute_values={"img": {"loading": {"lazy", "eager"}}},
    attribute_filter=_attribute,
    url_schemes=LINK_SCHEMES,
    link_rel="noopener noreferrer",
    strip_comments=True,
)

# CommonMark plus tables and ~~strikethrough~~; raw HTML passes into the result, which is then cleaned
# like any other HTML body.
_markdown = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])


def clean_html(html: str) -> str:
    """`html` with only the allowed tags, attributes and URLs left (the text of the rest kept)."""
    return _cleaner.clean(html)


def markdown_to_html(text: str) -> str:
    """Markdown as (uncleaned) HTML."""
    return _markdown.render(text)


def clean_body(text: str, body_format: str = "html") -> str:
    """A body as it is stored: Markdown converted, then cleaned."""
    html = markdown_to_html(text) if body_format == "markdown" else text
    return clean_html(html).strip()
