"""Articles: the list and its search, New / Edit / Delete, one article's page (its image slots edited
inline, prompts suggested from its headings, Generate, its HTML to copy or download), and the import of
many articles from a JSON or CSV file.

Every write goes through webapp.writer and webapp.importer, as the API's do: a view only turns a form into
their arguments and their refusals back into the same form (422, or 409 when the article's state is the
reason), so the pages and the API can never disagree about what is allowed.
"""

import json
import math
from html.parser import HTMLParser
from urllib.parse import quote_plus

from flask import Blueprint, Response, current_app, flash, g, redirect, render_template, request, url_for
from peewee import fn

from jobs import publishing
from jobs.errors import Conflict, ValidationError
from models import IMAGE_STATUSES, Content, Images, db
from webapp import importer, writer
from webapp.api.export import generated_images
from webapp.article_html import article_html
from webapp.htmx import install_error_handlers, is_htmx, toast
from webapp.images_page import progress_context
from webapp.images_query import blocks_for, image_label, latest_unfinished_task, prices, settings_view
from webapp.inputs import check_text, parse_page

bp = Blueprint("articles_page", __name__, url_prefix="/writer/articles")
install_error_handlers(bp)

PER_PAGE = 20
MAX_QUERY = 200  # characters of `q` searched, as the API's list
ARTICLE_FIELDS = ("title", "meta_title", "body", "body_format")
PUBLISHING_FIELDS = ("alt_text", "title", "caption")
SUGGESTION_CHARS = 300
# A heading or paragraph inside these is not one of the article's own, as article_html counts them: an
# in-article image k goes after the k-th <h2> it counts, so the suggestion for k describes that section.
_CONTAINERS = {"li", "ul", "ol", "dl", "dd", "dt", "blockquote", "table", "figure", "figcaption", "pre", "details",
               "aside"}


# --- the list, New, Edit, Delete -------------------------------------------------------------------

@bp.get("")
def articles():
    """The account's articles, newest first, a page at a time; `q` keeps those whose title has every word."""
    q = request.args.get("q", "")[:MAX_QUERY].strip()
    query = Content.for_account(g.account_id)
    for word in q.split():
        query = query.where(Content.title.contains(word))
    total = query.count()
    pages = max(1, math.ceil(total / PER_PAGE))
    page = min(parse_page(request.args.get("page")), pages)
    contents = list(query.order_by(Content.id.desc()).paginate(page, PER_PAGE))
    context = {"contents": contents, "counts": _status_counts([c.id for c in contents]), "statuses": IMAGE_STATUSES,
               "q": q, "page": page, "pages": pages, "total": total}
    # The search box asks for the list alone as one types; any other request (a reload, history) the page.
    template = "articles/_list.html" if request.headers.get("HX-Trigger") == "search" else "articles/list.html"
    return render_template(template, **context)


@bp.route("/new", methods=["GET", "POST"])
def new():
    """A new article: title, meta title and a body in HTML or Markdown (stored sanitized)."""
    if request.method == "GET":
        return render_template("articles/form.html", content=None, form={"body_format": "html"}, errors={})
    form = _article_form()
    try:
        content = writer.create_content(g.account_id, form)
    except ValidationError as exc:
        return render_template("articles/form.html", content=None, form=form, errors=_field_error(exc)), 422
    flash("Article created.", "success")
    return redirect(url_for(".article", content_id=content.id))


@bp.route("/<int:content_id>/edit", methods=["GET", "POST"])
def edit(content_id):
    """Edit an article's title, meta title and body."""
    content = writer.get_content(g.account_id, content_id)
    if request.method == "GET":
        form = {"title": content.title, "meta_title": content.meta_title, "body": content.body, "body_format": "html"}
        return render_template("articles/form.html", content=content, form=form, errors={})
    form = _article_form()
    try:
        writer.update_content(g.account_id, content.id, form)
    except ValidationError as exc:
        return render_template("articles/form.html", content=content, form=form, errors=_field_error(exc)), 422
    flash("Article saved.", "success")
    return redirect(url_for(".article", content_id=content.id))


@bp.route("/<int:content_id>/delete", methods=["GET", "POST"])
def delete(content_id):
    """Ask, then delete the article and its images; refused (409) while any of them is being generated."""
    content = writer.get_content(g.account_id, content_id)
    images = list(writer.content_images(g.account_id, content.id))
    if request.method == "POST":
        try:
            writer.delete_content(g.account_id, content.id)
        except Conflict as exc:
            return render_template("articles/delete.html", content=content, images=images, error=exc.message), 409
        flash(f"Deleted “{content.display_title}”.", "success")
        return redirect(url_for(".articles"))
    return render_template("articles/delete.html", content=content, images=images, error=None)


def _article_form() -> dict:
    return {name: request.form.get(name, "html" if name == "body_format" else "") for name in ARTICLE_FIELDS}


def _field_error(exc: ValidationError) -> dict:
    """The writer's sentence, shown beside the field it starts with ("title must be ..."), else atop the form."""
    field = exc.message.split(" ", 1)[0]
    return {field if field in ARTICLE_FIELDS else "form": exc.message}


def _status_counts(content_ids: list) -> dict:
    counts = {content_id: {} for content_id in content_ids}
    if content_ids:
        rows = (Images.select(Images.content, Images.status, fn.COUNT(Images.id))
                .where((Images.account == g.account_id) & Images.content.in_(content_ids))
                .group_by(Images.content, Images.status).tuples())
        for content_id, status, n in rows:
            counts[content_id][status] = n
    return counts


# --- one article's page and its image slots --------------------------------------------------------

@bp.get("/<int:content_id>")
def article(content_id):
    """The article: its image slots, Generate with the progress panel, its HTML, and its body."""
    content = writer.get_content(g.account_id, content_id)
    return render_template("articles/article.html", **_page(content))


@bp.get("/<int:content_id>/slots")
def slots(content_id):
    """The slots fragment, with the article's HTML out of band: fetched again when a generation of the
    article started or ended (see the stand-in for the Images page's blocks in article.html)."""
    return _answer(writer.get_content(g.account_id, content_id))


@bp.post("/<int:content_id>/images")
def add_image(content_id):
    """Add an image slot: type, position (in-article; blank is the first free one) and prompt."""
    content = writer.get_content(g.account_id, content_id)
    typed = {name: request.form.get(name, "") for name in ("image_type", "position", "prompt")}
    data = {"image_type": typed["image_type"], "prompt": typed["prompt"]}
    position = typed["position"].strip()
    if position:  # anything but a small whole number goes to the writer as it is, which says what is wrong
        data["position"] = int(position) if position.isascii() and position.isdigit() and len(position) < 4 \
            else position
    try:
        image = writer.add_image(g.account_id, content.id, data)
    except ValidationError as exc:
        return _answer(content, status=_status(exc), adding={**typed, "error": exc.message})
    return _answer(content, notice=f"Added the {image_label(image.image_type, image.position).lower()}.")


@bp.post("/images/<int:image_id>/prompt")
def edit_prompt(image_id):
    """Save a slot's prompt; refused (409) while its image is being generated."""
    return _edit(image_id, {"prompt": request.form.get("prompt", "")}, "prompt", "Prompt saved.")


@bp.post("/images/<int:image_id>/publishing")
def edit_publishing(image_id):
    """Save a slot's alt text, title and caption (an emptied alt text is made from the prompt again)."""
    changes = {name: request.form[name] for name in PUBLISHING_FIELDS if name in request.form}
    return _edit(image_id, changes, "publishing", "Alt text, title and caption saved.")


@bp.post("/images/<int:image_id>/position")
def move(image_id):
    """Move an in-article image to the position sent; the image there takes this one's place."""
    text = request.form.get("position", "").strip()
    position = int(text) if text.isascii() and text.isdigit() and len(text) < 4 else text
    image = writer.get_image(g.account_id, image_id)
    content = writer.get_content(g.account_id, image.content_id)
    try:
        moved = writer.update_image(g.account_id, image.id, {"position": position})
    except ValidationError as exc:
        return _answer(content, status=_status(exc), problem=exc.message)
    return _answer(content, notice=f"Moved to in-article position {moved.position}.")


@bp.post("/images/<int:image_id>/delete")
def remove_image(image_id):
    """Remove a slot (and its stored image); refused (409) while it is being generated."""
    image = writer.get_image(g.account_id, image_id)
    content = writer.get_content(g.account_id, image.content_id)
    try:
        writer.delete_image(g.account_id, image.id)
    except ValidationError as exc:
        return _answer(content, status=_status(exc), problem=exc.message)
    return _answer(content, notice=f"Removed the {image_label(image.image_type, image.position).lower()}.")


def _edit(image_id: int, changes: dict, form: str, notice: str):
    image = writer.get_image(g.account_id, image_id)
    content = writer.get_content(g.account_id, image.content_id)
    try:
        writer.update_image(g.account_id, image.id, changes)
    except ValidationError as exc:
        editing = {"id": image.id, "form": form, "error": exc.message, "typed": changes}
        return _answer(content, status=_status(exc), editing=editing)
    return _answer(content, notice=notice)


def _status(exc: ValidationError) -> int:
    return 409 if isinstance(exc, Conflict) else 422


def _answer(content, *, notice: str | None = None, status: int = 200, **state):
    """What a slot action answers. htmx: the slots (with any refusal in its form), the article's HTML out of
    band and a toast. A plain form: a redirect to the article, or, refused, the page with the refusal."""
    if not is_htmx():
        if status >= 400:
            return render_template("articles/article.html", **_page(content, **state)), status
        if notice:
            flash(notice, "success")
        return redirect(url_for(".article", content_id=content.id, _anchor="slots"))
    html = render_template("articles/_slots.html", **_slots_context(content, **state))
    html += render_template("articles/_html.html", oob=True, **_export_context(content))
    return (html + toast(notice, "success") if notice else html), status


def _page(content, **state) -> dict:
    return {**_slots_context(content, **state), **_export_context(content), "progress": _progress(content.id)}


def _progress(content_id: int) -> dict | None:
    """The panel of the task named in the address, else of the newest unfinished one if it covers this article."""
    asked = request.args.get("task")
    task_id = asked or latest_unfinished_task(g.account_id)
    progress = progress_context(task_id) if task_id else None
    if progress is None or not (asked or content_id in progress["content_ids"]):
        return None
    return progress


def _slots_context(content, *, editing=None, adding=None, problem=None) -> dict:
    view = settings_view(g.account_id)
    images = list(writer.content_images(g.account_id, content.id))
    # The Images page's block of this article: the images the settings turn on, and what Generate sends.
    block = blocks_for(g.account_id, view, [content.id])[0]
    limit = int(view["max_in_article_images"])
    have = {i.image_type for i in images}
    addable = [kind for kind in ("featured", "desktop", "mobile") if kind not in have
               and (kind == "featured" or view[f"{kind}_enabled"])]
    if sum(i.image_type == "in_article" and i.position <= limit for i in images) < limit:
        addable.insert(1 if "featured" in addable else 0, "in_article")
    return {"content": content, "images": images, "block": block, "shown": {i.id for i in block.images},
            "sizes": view["sizes"], "limit": limit, "addable": addable, "prices": prices(g.account_id),
            "editing": editing, "adding": adding or {}, "problem": problem}


def _export_context(content) -> dict:
    placed = generated_images(g.account_id, content.id)
    return {"content": content, "placed": len(placed),
            "article_html": article_html(content, placed, base_url=request.host_url)}


@bp.get("/<int:content_id>/article.html")
def download_html(content_id):
    """The article's HTML with its generated images placed, as a file to save."""
    content = writer.get_content(g.account_id, content_id)
    html = _export_context(content)["article_html"]
    name = f"{publishing.article_slug(content)}.html"
    headers = {"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "private, no-store"}
    return Response(html, content_type="text/html; charset=utf-8", headers=headers)


# --- suggested prompts ----------------------------------------------------------------------------

class _Outline(HTMLParser):
    """The stored body's first paragraph, and each of its own <h2> headings with the first paragraph under it."""

    def __init__(self, body: str):
        super().__init__(convert_charrefs=True)
        self.first_paragraph = ""
        self.sections: list[list[str]] = []  # [heading, first paragraph]
        self._inside = 0  # open containers (a list, a quote, a table...)
        self._open: str | None = None  # the <h2> or <p> whose text is being read
        self._text: list[str] = []
        self.feed(body or "")
        self.close()

    def handle_starttag(self, tag, attrs):
        if tag in _CONTAINERS:
            self._inside += 1
        elif tag == "br" and self._open:
            self._text.append(" ")
        elif tag in ("h2", "p") and self._open is None and (tag == "p" or not self._inside):
            self._open, self._text = tag, []

    def handle_endtag(self, tag):
        if tag in _CONTAINERS:
            self._inside = max(0, self._inside - 1)
        if tag != self._open:
            return
        self._open = None
        text = " ".join("".join(self._text).split())
        if tag == "h2":
            self.sections.append([text, ""])
        elif text:
            self.first_paragraph = self.first_paragraph or text
            if self.sections and not self.sections[-1][1]:
                self.sections[-1][1] = text

    def handle_data(self, data):
        if self._open:
            self._text.append(data)


def _trim(text: str, limit: int = SUGGESTION_CHARS) -> str:
    """At most `limit` characters, cut at a word boundary."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[:limit + 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > 0 else text[:limit]).rstrip(" ,;:-")


def _joined(heading: str, paragraph: str) -> str:
    if not (heading and paragraph):
        return _trim(heading or paragraph)
    return _trim(f"{heading}{' ' if heading[-1] in '.!?:' else ': '}{paragraph}")


def _suggestions(content, typed=None) -> dict:
    """One row per slot a suggestion is made for: the featured image, and in-article image k for the k-th
    <h2> section (up to the settings' maximum); a slot the article has already is shown, not offered."""
    limit = writer.max_in_article(g.account_id)
    existing = {(i.image_type, i.position if i.image_type == "in_article" else 0): i
                for i in writer.content_images(g.account_id, content.id)}
    outline = _Outline(content.body)
    rows = [{"field": "prompt_featured", "kind": "featured", "position": 0, "source": content.display_title,
             "suggested": _joined(content.title or content.meta_title, outline.first_paragraph)}]
    rows += [{"field": f"prompt_in_article_{n}", "kind": "in_article", "position": n, "source": heading,
              "suggested": _joined(heading, paragraph)}
             for n, (heading, paragraph) in enumerate(outline.sections[:limit], start=1)]
    for row in rows:
        row["label"] = image_label(row["kind"], row["position"])
        row["existing"] = existing.get((row["kind"], row["position"]))
        row["value"] = typed.get(row["field"], "") if typed is not None else row["suggested"]
    return {"content": content, "rows": rows, "sections": len(outline.sections),
            "beyond": max(0, len(outline.sections) - limit), "limit": limit}


@bp.get("/<int:content_id>/suggest")
def suggest(content_id):
    """Prompts suggested from the title, the first paragraph and each <h2> section, to edit before saving."""
    context = _suggestions(writer.get_content(g.account_id, content_id))
    return render_template("articles/_suggest.html" if is_htmx() else "articles/suggest.html", **context, error=None)


@bp.post("/<int:content_id>/suggest")
def save_suggestions(content_id):
    """Add the slots the article does not have yet, with the prompts as edited (an emptied one is left out);
    an existing slot's prompt is never replaced. All of them, or none."""
    content = writer.get_content(g.account_id, content_id)
    rows = _suggestions(content, typed=request.form)["rows"]
    added = kept = 0
    try:
        with db.atomic():
            for row in rows:
                if not row["value"].strip():
                    continue
                if row["existing"] is not None:
                    kept += 1
                    continue
                writer.add_image(g.account_id, content.id, {"image_type": row["kind"], "position": row["position"],
                                                            "prompt": row["value"]})
                added += 1
    except ValidationError as exc:
        context = {**_suggestions(content, typed=request.form), "error": exc.message}
        page = "articles/_suggest.html" if is_htmx() else "articles/suggest.html"
        return render_template(page, **context), _status(exc)
    notice = f"Added {added} image prompt{'' if added == 1 else 's'}." + (f" Kept {kept} existing." if kept else "")
    if not is_htmx():
        flash(notice, "success")
        return redirect(url_for(".article", content_id=content.id, _anchor="slots"))
    # The form's own place is emptied; the slots and the HTML come out of band.
    html = '<div id="suggest"></div>'
    html += render_template("articles/_slots.html", oob=True, **_slots_context(content))
    html += render_template("articles/_html.html", oob=True, **_export_context(content))
    return html + toast(notice, "success")


# --- import ---------------------------------------------------------------------------------------

@bp.route("/import", methods=["GET", "POST"])
def import_articles():
    """Upload a JSON or CSV file of articles: what it would create is shown, and nothing is created yet."""
    if request.method == "GET":
        return render_template("articles/import.html", preview=None, error=None)
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        return render_template("articles/import.html", preview=None, error="Choose a JSON or CSV file."), 422
    try:
        articles = _parse_upload(upload)
        specs = _check_all(articles)
    except ValidationError as exc:
        return render_template("articles/import.html", preview=None, error=exc.message, filename=upload.filename), 422
    carried = json.dumps(articles, ensure_ascii=False, separators=(",", ":"))
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    if limit and len(quote_plus(carried)) + 4096 > limit:
        error = (f"{upload.filename} is too large to create from this page; split it into smaller files, or send "
                 "it to the API (POST /v1/writer/content/import/).")
        return render_template("articles/import.html", preview=None, error=error, filename=upload.filename), 422
    return render_template("articles/import.html", preview=specs, carried=carried, filename=upload.filename, error=None)


@bp.post("/import/create")
def create_imported():
    """Create every previewed article in one transaction: all of them, or none."""
    try:
        articles = json.loads(request.form.get("articles", ""))
    except (ValueError, RecursionError):
        articles = None
    if not isinstance(articles, list) or not articles:
        return render_template("articles/import.html", preview=None,
                               error="The preview did not come with the form; upload the file again."), 422
    try:
        check_text(articles, "articles")
        ids = importer.create_all(g.account_id, articles)
    except ValidationError as exc:
        return render_template("articles/import.html", preview=None, error=exc.message), 422
    flash(f"Created {len(ids)} article{'' if len(ids) == 1 else 's'}.", "success")
    return redirect(url_for(".articles"))


def _parse_upload(upload) -> list:
    try:
        text = upload.read().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValidationError("The file must be UTF-8 text.") from None
    name = upload.filename.lower()
    if not (name.endswith(".json") or (not name.endswith(".csv") and text.lstrip().startswith("{"))):
        return importer.parse_csv(text)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationError(f"The file is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno}).") \
            from None
    except RecursionError:
        raise ValidationError("The JSON is nested too deeply.") from None
    check_text(data, "The file")
    return importer.parse_json(data)


def _check_all(articles: list) -> list:
    """What create_all will check, so that the preview shows only what Create makes."""
    return importer.check_all(g.account_id, articles)
