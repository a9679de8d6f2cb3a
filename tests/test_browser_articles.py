"""The Articles pages in headless Debian Chromium, against the real app on a local port and a real RQ worker
with the placeholder provider: issue #14's first acceptance test end to end, and a hostile body shown cleaned
with no script run. Screenshots land in test-artifacts/articles-*.png."""

import contextlib
import io
import re
import zipfile

import pytest

from models import Content, Images, db
from tests import factories
from tests.browser_fixtures import logged_in_page
from tests.conftest import Personas
from tests.test_browser import shot

pytestmark = [pytest.mark.browser, pytest.mark.worker]

HEADINGS = ("Choosing a kite", "Finding a field", "Launching it")
BODY = """<p>Kites fly when the wind is steady and the sky is open.</p>
<h2>Choosing a kite</h2>
<p>A delta kite forgives a beginner. It climbs in light wind.</p>
<h2>Finding a field</h2>
<p>Open ground, no trees and no power lines.</p>
<h2>Launching it</h2>
<p>Stand with your back to the wind and let the line out slowly.</p>"""


@pytest.fixture
def account():
    with db.connection_context():
        a = factories.account_id("A")
    factories.settings(a, provider="placeholder", model="placeholder-v1", max_in_article_images=3)
    return a


@pytest.fixture
def page(chromium, live_server, personas, worker, account):
    context, page = logged_in_page(chromium, live_server, personas.owner, Personas.password)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server)
    errors, dialogs = [], []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # No page here asks anything of a person: a dialog is a script that should not have run.
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.dialogs = dialogs
    yield page
    with contextlib.suppress(Exception):
        shot(page, "articles-last-page.png", full_page=True)
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"
    assert not dialogs, f"dialogs opened: {dialogs}"


def toast(page, text):
    page.wait_for_selector(f"#toasts .toast:has-text('{text}')")


def slot_prompts(page) -> list[tuple[str, str]]:
    """(data-position, prompt) of each slot as the page shows them, in page order."""
    return page.eval_on_selector_all("#slots .slot", """s => s.map(x => [
        x.dataset.type + ':' + x.dataset.position, x.querySelector('.prompt').textContent])""")


def images_of(content_id) -> list[Images]:
    with db.connection_context():
        return list(Images.select().where(Images.content == content_id).order_by(Images.type_rank(), Images.position))


def test_an_article_from_a_pasted_body_to_its_html_with_each_image_after_its_heading(page, account, live_server):
    """Acceptance 1: a pasted HTML body with three sections; prompts suggested for the featured image and the
    three in-article slots, one edited; reordered; generated; an alt text edited; the HTML copied — each image
    sits after the right heading with its alt text; then the article is deleted."""
    page.goto("/writer/articles")
    shot(page, "articles-empty.png")
    page.locator("#new-article").click()
    page.get_by_label("Title", exact=True).fill("Flying kites")
    page.get_by_label("Meta title").fill("Flying kites: a beginner's guide")
    page.evaluate("body => navigator.clipboard.writeText(body)", BODY)
    page.get_by_label("Body", exact=True).focus()
    page.keyboard.press("ControlOrMeta+V")  # pasted, as a person does
    assert page.get_by_label("Body", exact=True).input_value() == BODY
    shot(page, "articles-new.png", full_page=True)
    page.locator("#save-article").click()
    page.wait_for_url(re.compile(r"/writer/articles/\d+$"))
    content_id = int(page.url.rsplit("/", 1)[1])
    toast(page, "Article created.")
    assert page.locator("#article-body h2").all_inner_texts() == list(HEADINGS)
    assert page.locator("#slots .slot").count() == 0

    # Suggest prompts: one per slot, edited before they are saved.
    page.locator("#suggest-prompts").click()
    featured = page.get_by_label(re.compile("^Featured image"))
    assert featured.input_value() == "Flying kites: Kites fly when the wind is steady and the sky is open."
    second = page.get_by_label(re.compile("^In-article image 2"))
    assert second.input_value() == "Finding a field: Open ground, no trees and no power lines."
    assert page.get_by_label(re.compile("^In-article image 3")).input_value().startswith("Launching it: Stand")
    second.fill("A wide open meadow. Kites overhead, no trees")
    shot(page, "articles-suggested.png", full_page=True)
    page.locator("#save-suggestions").click()
    toast(page, "Added 4 image prompts.")
    assert page.locator("#suggest").inner_html() == ""
    assert [p for p, _ in slot_prompts(page)] == ["featured:0", "in_article:1", "in_article:2", "in_article:3"]
    assert slot_prompts(page)[2][1] == "A wide open meadow. Kites overhead, no trees"

    # An inline prompt edit, then a reorder: in-article 1 moves down, the writer swaps it with 2.
    first_id = images_of(content_id)[1].id
    slot = page.locator(f"#slot-{first_id}")
    slot.locator("summary", has_text="Edit prompt").click()
    slot.get_by_label("Prompt for the in-article image 1").fill("A red delta kite climbing. Light wind")
    slot.get_by_role("button", name="Save prompt").click()
    toast(page, "Prompt saved.")
    page.locator(f"#move-down-{first_id}").click()
    toast(page, "Moved to in-article position 2.")
    assert [text for _, text in slot_prompts(page)[1:3]] == ["A wide open meadow. Kites overhead, no trees",
                                                            "A red delta kite climbing. Light wind"]
    shot(page, "articles-slots.png", full_page=True)

    # Generate from the article's page: the panel follows the worker, then the slots come back generated.
    assert page.locator("#generate-article").inner_text() == "Generate Images (4)"
    page.locator("#generate-article").click()
    page.wait_for_selector("#progress[data-task-id]")
    page.wait_for_selector("#progress .final")
    assert page.locator("#progress .final").inner_text() == "4 images generated successfully"
    page.wait_for_function("document.querySelectorAll('#slots .slot.status-generated .thumb img').length === 4")
    page.wait_for_function("[...document.querySelectorAll('#slots .thumb img')].every(i => i.naturalWidth > 0)")
    shot(page, "articles-generated.png", full_page=True)

    # Edit the alt text of the image now at position 1; the HTML to copy follows.
    moved = next(i for i in images_of(content_id) if i.image_type == "in_article" and i.position == 1)
    slot = page.locator(f"#slot-{moved.id}")
    slot.locator("summary", has_text="Alt text").click()
    slot.get_by_label("Alt text").fill("Kites over an open meadow")
    slot.get_by_label("Caption").fill("Plenty of room")
    slot.get_by_role("button", name="Save", exact=True).click()
    toast(page, "Alt text, title and caption saved.")
    assert page.locator(f"#alt-text-{moved.id}").inner_text() == "Kites over an open meadow"

    page.locator("#copy-html").click()
    page.wait_for_selector("#copy-html:has-text('Copied')")
    html = page.evaluate("navigator.clipboard.readText()")
    assert html == page.locator("#article-html-text").input_value()
    images = images_of(content_id)
    assert all(i.status == "generated" and i.public_key for i in images)

    def figure(image):
        caption = f"<figcaption>{image.caption}</figcaption>" if image.caption else ""
        return (f'<figure><img src="{live_server}/p/{image.public_key}.webp" alt="{image.alt_text}" '
                f'width="{image.width}" height="{image.height}" loading="lazy">{caption}</figure>')

    assert html.startswith("\n" + figure(images[0]))  # the featured image first
    for image, heading in zip(images[1:], HEADINGS, strict=True):
        after = html[html.index(f"<h2>{heading}</h2>") + len(f"<h2>{heading}</h2>"):]
        assert after.startswith("\n" + figure(image)), (heading, after[:300])
    assert 'alt="Kites over an open meadow"' in html and html.index("Kites over an open meadow") < \
        html.index("Finding a field")  # after the first heading: it was moved to position 1
    public = page.request.get(f"{live_server}/p/{images[1].public_key}.webp")
    assert public.status == 200 and public.headers["content-type"] == "image/webp"

    with page.expect_download() as download:
        page.locator("#download-html").click()
    assert download.value.suggested_filename == "flying-kites.html"
    assert download.value.path().read_text(encoding="utf-8") == html
    with page.expect_download() as download:
        page.locator("#download-images").click()
    with zipfile.ZipFile(io.BytesIO(download.value.path().read_bytes())) as archive:
        names = archive.namelist()
    assert "manifest.json" in names and len(names) == 5

    page.set_viewport_size({"width": 390, "height": 844})  # a phone: nothing wider than the screen
    page.reload()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    shot(page, "articles-phone.png", full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})

    # Delete: a confirmation page first, then the article and its images are gone.
    page.locator("#delete-article").click()
    page.wait_for_url(f"**/writer/articles/{content_id}/delete")
    assert "4 image slots are deleted, with the files of its 4 generated images" in \
        " ".join(page.locator(".confirm").inner_text().split())
    shot(page, "articles-delete.png")
    page.locator("#confirm-delete").click()
    page.wait_for_url("**/writer/articles")
    toast(page, "Deleted “Flying kites”.")
    with db.connection_context():
        assert Content.select().count() == 0 and Images.select().count() == 0
    assert page.request.get(f"{live_server}/p/{images[1].public_key}.webp").status == 404


HOSTILE_TITLE = '<img src=x onerror="window.__xss=1;alert(1)">Hostile'
HOSTILE_BODY = """<p>Intro <a href="javascript:window.__xss=2;alert(2)">a bad link</a>
<a href="JaVaScRiPt:alert(3)" id="x">another</a></p>
<script>window.__xss = 3; alert(4)</script>
<img src="https://example.test/x.png" onerror="window.__xss=4;alert(5)" alt="pic">
<iframe src="javascript:alert(6)"></iframe><iframe srcdoc="<script>parent.alert(7)</script>"></iframe>
<h2 onmouseover="alert(8)">Section</h2><p onclick="alert(9)">Click me</p>
<svg><script>alert(10)</script></svg><form action="javascript:alert(11)"><button>Go</button></form>"""


def test_a_hostile_body_is_shown_sanitized_and_no_script_runs(page, account):
    """Acceptance 2, the pages: <script>, onerror=, javascript: links and <iframe> in a body (and markup in the
    title) are shown cleaned or as text, and nothing of them runs on any page that shows the article."""
    page.goto("/writer/articles/new")
    page.get_by_label("Title", exact=True).fill(HOSTILE_TITLE)
    page.get_by_label("Body", exact=True).fill(HOSTILE_BODY)
    page.locator("#save-article").click()
    page.wait_for_url(re.compile(r"/writer/articles/\d+$"))
    content_id = int(page.url.rsplit("/", 1)[1])
    page.wait_for_load_state("networkidle")

    body = page.locator("#article-body")
    assert body.locator("script, iframe, svg, form, [onerror], [onclick], [onmouseover]").count() == 0
    hrefs = body.locator("a").evaluate_all("a => a.map(x => x.getAttribute('href'))")
    assert hrefs and not any(h and h.strip().lower().startswith("javascript") for h in hrefs), hrefs
    assert "Click me" in body.inner_text() and body.locator("h2").inner_text() == "Section"
    assert page.locator("#article-title").inner_text() == HOSTILE_TITLE  # the title is text, not markup
    body.locator("a", has_text="a bad link").click()  # a link without its javascript: does nothing
    body.locator("p", has_text="Click me").click()
    page.locator("#article-body h2").hover()
    shot(page, "articles-hostile.png", full_page=True)

    for path in (f"/writer/articles/{content_id}", f"/writer/articles/{content_id}/edit",
                 f"/writer/articles/{content_id}/suggest", f"/writer/articles/{content_id}/delete",
                 "/writer/articles", "/writer/articles?q=Hostile", "/", "/writer/images"):
        page.goto(path)
        page.wait_for_load_state("networkidle")
        assert page.evaluate("window.__xss || 0") == 0, path
    page.goto(f"/writer/articles/{content_id}")
    copied = page.locator("#article-html-text").input_value()
    assert "<script" not in copied and "javascript:" not in copied.lower() and "onerror" not in copied
    assert page.dialogs == []
    with db.connection_context():
        stored = Content.get_by_id(content_id).body
    assert "<script" not in stored and "<iframe" not in stored and "onerror" not in stored


def test_select_all_ticks_the_pages_articles_and_the_bulk_button_counts_them(page, account):
    factories.article(account, title="Kites", prompts=("A", "B"))
    factories.article(account, title="Tomatoes", prompts=("C", "D", "E"))
    done, ids = factories.article(account, title="Done", prompts=("F",))
    with db.connection_context():
        Images.update(status="generated").where(Images.id.in_(ids)).execute()
    page.goto("/writer/images")
    select_all = page.get_by_label("Select all on this page")
    assert select_all.is_visible() and not select_all.is_checked()
    select_all.check()
    boxes = page.locator("input[form=bulk][name=content_id]")
    assert [boxes.nth(n).is_checked() for n in range(3)] == [False, True, True]  # "Done" has nothing pending
    assert page.locator("#generate-selected").inner_text() == "Generate selected (5)"
    page.get_by_label("Select Tomatoes").uncheck()  # newest first: Done, Tomatoes, Kites
    assert page.evaluate("document.getElementById('select-all').indeterminate") is True
    assert page.locator("#generate-selected").inner_text() == "Generate selected (2)"
    shot(page, "articles-select-all.png")
    select_all.click()  # from "some": all again
    assert page.locator("#generate-selected").inner_text() == "Generate selected (5)"
    select_all.uncheck()
    assert page.locator("#generate-selected").inner_text() == "Generate selected"
    assert not any(boxes.nth(n).is_checked() for n in range(3))
    select_all.check()
    page.locator("#generate-selected").click()
    page.wait_for_selector("#progress .final:has-text('5 images generated successfully')")
