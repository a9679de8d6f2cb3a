"""Many articles at once, from a JSON body or a CSV file: every one of them is created, or none.

The API and the pages share this: parse_json / parse_csv turn what was sent into content create
bodies, and create_all checks them all before it creates any, in one transaction. Errors name where
the bad value was: `articles[3].images[0].image_type ...` for JSON, `line 7: ...` for a CSV row.
"""

import csv
import io

from jobs.errors import ValidationError
from models import db
from webapp import writer
from webapp.inputs import check_text
from webapp.writer import At

MAX_ARTICLES = 500
MAX_ROWS = 5000
COLUMNS = ("title", "meta_title", "image_type", "position", "prompt")
IMAGE_COLUMNS = ("image_type", "position", "prompt")
# A CSV row's line number rides along in the article and image it made (a JSON body's have none), so
# that create_all's errors can point at the row.
LINE = "_line"


def parse_json(data) -> list[dict]:
    """`{"articles": [<content create body>, ...]}` → the articles (checked in create_all)."""
    articles = data.get("articles") if isinstance(data, dict) else None
    if not isinstance(articles, list) or not articles:
        raise ValidationError('Send {"articles": [...]}: a non-empty list of articles to create.')
    if len(articles) > MAX_ARTICLES:
        raise ValidationError(f"At most {MAX_ARTICLES} articles per import; got {len(articles)}.")
    for n, article in enumerate(articles):
        if not isinstance(article, dict):
            raise ValidationError(f"articles[{n}] must be an object.")
    return articles


def _header(cells: list) -> list | None:
    names = [c.strip().lower() for c in cells]
    if "title" in names and all(name in COLUMNS for name in names if name):
        return names
    return None


def _position(text: str, line: int):
    if not text:
        return None  # in-article: the article's next free position; the others: 0
    if not (text.isascii() and text.isdigit() and len(text) <= 3):
        raise ValidationError(f"line {line}: position must be a whole number; got {text[:20]!r}.")
    return int(text)


def _rows(text: str):
    """(line number, cells) of each non-blank record; a record's line is the one it starts on."""
    reader = csv.reader(io.StringIO(text))
    start = 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise ValidationError(f"line {start}: {exc}.") from None
        if any(c.strip() for c in cells):
            yield start, cells
        start = reader.line_num + 1


def parse_csv(text: str) -> list[dict]:
    """Rows of `title, meta_title, image_type, position, prompt` (a header row naming these columns,
    in any order, is optional) → articles, grouped by title and meta_title in the order they first
    appear. A row without image_type, position and prompt adds an article without an image."""
    if not isinstance(text, str):
        raise ValidationError("The CSV must be text.")
    check_text(text, "The CSV")
    articles: dict = {}
    columns = None
    for count, (line, cells) in enumerate(_rows(text.lstrip("\ufeff"))):
        if count >= MAX_ROWS:
            raise ValidationError(f"line {line}: at most {MAX_ROWS} rows per import.")
        if count == 0 and (columns := _header(cells)) is not None:
            continue
        names = columns or COLUMNS
        if len(cells) != len(names):
            raise ValidationError(f"line {line}: expected {len(names)} columns ({', '.join(names)}); "
                                  f"got {len(cells)}.")
        row = {name: value.strip() for name, value in zip(names, cells, strict=True) if name}
        title, meta_title = row.get("title", ""), row.get("meta_title", "")
        if not title:
            raise ValidationError(f"line {line}: title is empty; every row names its article.")
        article = articles.setdefault((title, meta_title), {"title": title, "meta_title": meta_title,
                                                            "images": [], LINE: line})
        if not any(row.get(name) for name in IMAGE_COLUMNS):
            continue
        image_type = row.get("image_type", "").lower().replace("-", "_").replace(" ", "_")
        article["images"].append({"image_type": image_type, "position": _position(row.get("position", ""), line),
                                  "prompt": row.get("prompt", ""), LINE: line})
    if not articles:
        raise ValidationError("The CSV has no articles.")
    if len(articles) > MAX_ARTICLES:
        raise ValidationError(f"At most {MAX_ARTICLES} articles per import; the CSV has {len(articles)}.")
    found = list(articles.values())
    for n, article in enumerate(found):  # what can be checked without the account's settings
        _check(article, n, None)
    return found


def _at(raw, fallback: str) -> At:
    line = raw.get(LINE) if isinstance(raw, dict) else None
    return At(f"line {line}: ") if isinstance(line, int) and not isinstance(line, bool) else At(fallback)


def _check(article, n: int, max_in: int | None) -> dict:
    at = _at(article, f"articles[{n}].")
    return writer.check_article(article, at, max_in,
                                image_at=lambda k, raw: _at(raw, f"articles[{n}].images[{k}]."))


def check_all(account_id: int, articles: list) -> list[dict]:
    """Every article checked as create_all will, the account's in-article limit included (the preview)."""
    if len(articles) > MAX_ARTICLES:
        raise ValidationError(f"At most {MAX_ARTICLES} articles per import; got {len(articles)}.")
    limit = writer.max_in_article(account_id)
    return [_check(article, n, limit) for n, article in enumerate(articles)]


def create_all(account_id: int, articles: list) -> list[int]:
    """Check every article, then create them all in one transaction; their ids, in order."""
    specs = check_all(account_id, articles)
    with db.atomic():
        return [writer.create_checked(account_id, spec).id for spec in specs]
