"""The staff pages in headless Debian Chromium (never a downloaded browser), against the real app on
a local port and a real RQ worker process. Screenshots land in test-artifacts/ on every run.

If Chromium cannot be launched these tests fail: a skipped browser test would hide a broken UI.
"""

import contextlib
from urllib.parse import parse_qs, urlsplit

import pytest

from jobs import image_settings
from models import AIPrompt, AITaskLog, Content, Images, User, db
from tests import factories
from tests.browser_fixtures import ARTIFACTS, logged_in_page
from tests.conftest import Personas
from tests.page_helpers import running_task

pytestmark = [pytest.mark.browser, pytest.mark.worker]

@pytest.fixture
def page(chromium, live_server, personas, worker):
    context, page = logged_in_page(chromium, live_server, personas.owner, Personas.password)
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    with contextlib.suppress(Exception):
        shot(page, "last-page.png", full_page=True)
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture
def account():
    with db.connection_context():
        a = factories.account_id("A")
    factories.settings(a, provider="placeholder", model="placeholder-v1", max_in_article_images=5,
                       desktop_enabled=True, mobile_enabled=True)
    return a


def big_article(account_id, title):
    """Eight images: enough for the panel to show the rows changing while the worker runs."""
    with db.connection_context():
        content = Content.create(account=account_id, title=title, meta_title=f"{title}: a guide")
        specs = [("featured", 0, "A lighthouse at dusk"), ("desktop", 0, "A wide harbour panorama"),
                 ("mobile", 0, "A tall cliff with a path")]
        specs += [("in_article", n, p) for n, p in enumerate(
            ["Gulls over waves", "A sandy path", "Fishing boats", "A beach café", "Tide pools"], start=1)]
        ids = [Images.create(account=account_id, content=content, image_type=t, position=n, prompt=p).id
               for t, n, p in specs]
    return content, ids


def statuses(ids):
    return [i.status for i in factories.images(ids)]


def shot(page, name, full_page=False):
    # Bars animate their width; a screenshot should show where they are going, not half-way.
    page.screenshot(path=str(ARTIFACTS / name), full_page=full_page, animations="disabled")


def type_into(field, text):
    """Type key by key, as a person does: the preview listens for keyup."""
    field.fill("")
    field.press_sequentially(text)


def row_states(page) -> list[str]:
    return page.eval_on_selector_all("#progress .progress-row", "rows => rows.map(r => r.dataset.status)")


def test_generate_shows_each_image_progress_and_thumbnails_then_the_article_is_generated(page, account):
    factories.article(account, title="Growing tomatoes on a balcony", prompts=("Tomatoes in pots", "Seedlings"))
    content, ids = big_article(account, "A day at the sea")
    page.goto("/writer/images")
    shot(page, "images-page.png", full_page=True)
    # Every swap of the panel records its rows, to see them change; the marker shows no full reload happened.
    page.evaluate("""() => { window.__noReload = true; window.__seen = [];
        document.body.addEventListener('htmx:afterSettle', () => window.__seen.push(
            [...document.querySelectorAll('#progress .progress-row')].map(r => r.dataset.status).join(','))); }""")

    button = page.locator(f"#generate-{content.id}")
    assert button.inner_text() == "Generate Images (8)"
    button.focus()
    page.keyboard.press("Enter")  # keyboard-usable: the button works without a mouse

    panel = page.locator("#progress[data-task-id]")
    panel.wait_for()
    assert panel.get_attribute("hx-trigger") == "every 1s"
    assert page.locator('#progress [aria-current="step"]').count() == 1
    assert "Image generation started" in page.locator("#toasts").inner_text()
    shot(page, "progress-started.png")
    page.wait_for_selector("#progress .progress-row[data-status=generated] img")
    shot(page, "progress-mid-run.png")

    page.wait_for_selector("#progress .final")
    assert page.locator("#progress .final").inner_text() == "8 images generated successfully"
    assert page.locator("#progress").get_attribute("hx-trigger") is None  # the finished panel stops polling
    assert row_states(page) == ["generated"] * 8
    seen = page.evaluate("window.__seen")
    assert any(set(s.split(",")) - {"generated"} for s in seen), seen  # rows were seen before they ended
    loaded = page.eval_on_selector_all("#progress .row-thumb img", "i => i.map(x => x.complete && x.naturalWidth)")
    assert len(loaded) == 8 and all(loaded), loaded
    bars = page.eval_on_selector_all("#progress .progress-row [role=progressbar]", "b => b.map(x => x.ariaValueNow)")
    assert bars == ["100"] * 8
    page.wait_for_selector("#toasts .toast-success")
    assert "8 images generated successfully" in page.locator("#toasts").inner_text()
    shot(page, "progress-finished.png")

    # The article's block was refreshed in place, then the panel closes.
    block = page.locator(f"#article-{content.id}")
    assert block.locator(".image-card.status-generated").count() == 8
    assert "No pending images with prompts found" in block.inner_text()
    page.locator("#progress-close").click()
    assert page.locator("#progress .progress-row").count() == 0
    assert page.evaluate("window.__noReload") is True
    full_size = block.locator(".thumb a").first.get_attribute("href")
    response = page.request.get(full_size)
    assert response.status == 200 and response.headers["content-type"] == "image/webp"
    assert statuses(ids) == ["generated"] * 8
    shot(page, "images-page-generated.png", full_page=True)


def test_a_failed_image_shows_its_error_and_retry_failed_after_fixing_the_prompt_succeeds(page, account):
    content, ids = factories.article(account, title="Kites", prompts=("A red kite", "Two kites", "A spool"))
    with db.connection_context():
        # Longer than the placeholder provider accepts: a real failure, with a readable reason.
        Images.update(prompt="kite " * 7000).where(Images.id == ids[1]).execute()
    page.goto("/writer/images")
    page.locator(f"#generate-{content.id}").click()
    page.wait_for_selector("#progress .final")
    assert page.locator("#progress .final").inner_text() == "2 images generated, 1 failed"
    failed_row = page.locator(f"#progress .progress-row[data-image-id='{ids[1]}']")
    assert "accepts at most 32000" in failed_row.locator(".error").inner_text()
    shot(page, "progress-failed.png")

    card = page.locator(f"#image-{ids[1]}")
    assert "accepts at most 32000" in card.locator(".error").inner_text()
    card.locator("summary").click()
    card.get_by_label("Prompt for the in-article image 1").fill("Two kites over a beach")
    card.get_by_role("button", name="Save prompt").click()
    page.wait_for_selector("#toasts .toast-success:has-text('Prompt saved.')")

    page.locator("#progress-retry").click()
    page.wait_for_selector("#progress .final:has-text('1 image generated successfully')")
    assert row_states(page) == ["generated"]
    assert page.locator(f"#image-{ids[1]} .thumb img").count() == 1
    assert statuses(ids) == ["generated"] * 3


def test_a_whitespace_only_prompt_is_refused_next_to_its_field(page, account):
    _, ids = factories.article(account, title="Blank", prompts=("A red kite",))
    page.goto("/writer/images")
    card = page.locator(f"#image-{ids[0]}")
    card.locator("summary").click()
    card.get_by_label("Prompt for the featured image").fill("   ")  # passes the field's `required`
    card.get_by_role("button", name="Save prompt").click()
    error = page.locator(f"#prompt-error-{ids[0]}")
    error.wait_for()
    assert "non-empty" in error.inner_text()
    field = card.get_by_label("Prompt for the featured image")
    assert field.is_visible() and field.get_attribute("aria-invalid") == "true"
    assert page.locator("#toasts .toast").count() == 0  # said beside the field, not in a toast
    shot(page, "prompt-refused.png")
    assert factories.image(ids[0]).prompt == "A red kite"


def test_an_ended_session_reloads_the_page_into_the_login_instead_of_swapping_it_in(page, account, personas):
    content, ids = factories.article(account, title="Ended")
    page.goto("/writer/images?status=pending")
    with db.connection_context():  # logged out on another device
        User.update(session_version=User.session_version + 1).where(User.id == personas.owner.id).execute()
    page.locator(f"#generate-{content.id}").click()
    page.wait_for_url(lambda url: urlsplit(url).path == "/login")
    assert parse_qs(urlsplit(page.url).query)["next"] == ["/writer/images?status=pending"]  # the page, not the fragment
    assert page.get_by_label("Password").is_visible()
    assert statuses(ids) == ["pending"] * 3


def test_an_unsafe_template_fails_the_images_and_retry_after_fixing_it_on_the_prompts_page(page, account):
    content, ids = factories.article(account, title="Espresso")
    with db.connection_context():
        # Written behind the API's back: the job refuses it per image with a sentence, no provider call.
        AIPrompt.create(account=account, prompt_type="image_prompt_template", prompt_value="{post_title.__class__}")
    page.goto("/writer/images")
    page.locator(f"#generate-{content.id}").click()
    page.wait_for_selector("#progress .final:has-text('0 images generated, 3 failed')")
    assert "{post_title.__class__}" in page.locator("#progress .progress-row .error").first.inner_text()

    page.goto("/thinker/prompts")
    preview = page.locator("#prompt-preview")
    assert "{post_title.__class__}" in preview.inner_text()
    type_into(page.get_by_label("Image prompt template"), "A {image_type} photo: {image_prompt}, for {post_title}")
    page.wait_for_selector("#prompt-preview blockquote:has-text('A realistic photo: ')")
    page.locator("#save-prompts").click()
    page.wait_for_selector("#toasts .toast-success:has-text('Prompts saved.')")

    page.goto("/writer/images")
    page.locator(f"#retry-{content.id}").click()
    page.wait_for_selector("#progress .final:has-text('3 images generated successfully')")
    assert statuses(ids) == ["generated"] * 3


def test_settings_save_re_renders_models_and_keeps_the_key_masked(page, account):
    page.goto("/settings/integrations/image-generation")
    page.get_by_label("Provider").select_option("openai")
    page.wait_for_selector("#model option[value='gpt-image-2']", state="attached")
    assert "placeholder-v1" not in page.locator("#model").inner_html()
    page.get_by_label("Model").select_option("gpt-image-2")
    page.get_by_label("API key").fill("sk-browser-secret-wxyz")
    page.get_by_label("In-article images").fill("9")
    page.locator("#save-settings").click()
    page.wait_for_selector("#max_in_article_images-error")
    assert "from 1 to 5" in page.locator("#max_in_article_images-error").inner_text()
    assert page.get_by_label("API key").input_value() == ""

    page.get_by_label("API key").fill("sk-browser-secret-wxyz")
    page.get_by_label("In-article images").fill("4")
    page.locator("#save-settings").click()
    page.wait_for_selector("#toasts .toast-success:has-text('Settings saved.')")
    assert "ends in wxyz" in page.locator("#api_key-status").inner_text()
    shot(page, "settings.png", full_page=True)
    page.reload()
    assert "sk-browser-secret" not in page.content()
    assert page.get_by_label("API key").input_value() == ""
    assert page.get_by_label("Model").input_value() == "gpt-image-2"
    with db.connection_context():
        saved = image_settings.public_view(image_settings.settings_row(account))
    assert (saved["provider"], saved["model"], saved["api_key_last4"], saved["max_in_article_images"]) == \
        ("openai", "gpt-image-2", "wxyz", 4)


def test_the_prompts_page_refuses_an_unsafe_placeholder_by_name(page, account):
    page.goto("/thinker/prompts")
    type_into(page.get_by_label("Image prompt template"), "A {author} picture")
    page.wait_for_selector("#prompt-preview .field-error:has-text('{author}')")
    page.locator("#save-prompts").click()
    page.wait_for_selector("#template-error")
    assert "{author}" in page.locator("#template-error").inner_text()
    shot(page, "prompts.png", full_page=True)


def test_the_images_page_fits_a_phone_screen(page, account):
    big_article(account, "A day at the sea")
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto("/writer/images")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    shot(page, "images-page-phone.png", full_page=True)


def test_a_failing_request_shows_a_readable_error_never_a_blank_panel_or_a_trace(page, account):
    content, ids = factories.article(account, title="Errors")
    page.goto("/writer/images")
    # A stale CSRF token: the server refuses, the page says why in a toast.
    page.evaluate("""() => { document.body.setAttribute('hx-headers', JSON.stringify({'X-CSRFToken': 'stale'}));
        document.querySelectorAll('input[name=csrf_token]').forEach(i => { i.value = 'stale'; }); }""")
    page.locator(f"#generate-{content.id}").click()
    page.wait_for_selector("#toasts .toast-error:has-text('CSRF token')")
    assert page.locator("#progress").inner_text() == ""
    # A crash behind a proxy: its HTML (here with a traceback) is never shown, only a sentence.
    page.route("**/writer/images/generate", lambda route: route.fulfill(
        status=500, content_type="text/html", body="<h1>Traceback (most recent call last)</h1>"))
    page.locator(f"#generate-{content.id}").click()
    page.wait_for_selector("#toasts .toast-error:has-text('The server had a problem (500)')")
    assert "Traceback" not in page.locator("body").inner_text()
    # The network is down.
    page.unroute("**/writer/images/generate")
    page.route("**/writer/images/generate", lambda route: route.abort())
    page.locator(f"#generate-{content.id}").click()
    page.wait_for_selector("#toasts .toast-error:has-text('could not be reached')")
    shot(page, "request-errors.png")
    assert statuses(ids) == ["pending"] * 3


def test_the_panel_survives_a_lost_connection_and_stops_polling_a_task_that_is_gone(page, account):
    _, ids = factories.article(account, title="Flaky network")
    task_id = running_task(account, ids)  # mid-run, with no job behind it: it stays running
    page.goto("/writer/images")
    page.wait_for_selector("#progress[data-poll]")
    progress = f"**/writer/tasks/{task_id}/progress"
    page.route(progress, lambda route: route.abort())
    page.wait_for_selector("#progress [data-panel-error]:has-text('could not be reached')")
    assert page.locator("#progress .progress-row").count() == 3  # the rows stay; never a blank panel
    page.unroute(progress)
    page.wait_for_selector("#progress [data-panel-error]", state="hidden")  # the next poll recovers
    with db.connection_context():
        AITaskLog.delete().where(AITaskLog.task_id == task_id).execute()
    page.wait_for_selector("#progress [data-panel-error]:has-text('Task not found.')")
    assert page.locator("#progress").get_attribute("hx-trigger") is None
    page.locator("#progress [data-close-panel]").click()
    assert page.locator("#progress .progress-row").count() == 0
