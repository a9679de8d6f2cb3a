"""Spending under control on the staff pages: estimates on the Generate buttons (the dry run's figure),
a confirmation on a paid provider, budget refusals, the budgets in Settings, and Cancel on the panel."""

import html as html_lib
import re
import uuid
from decimal import Decimal

import pytest

from jobs.budget import usd
from models import AITaskLog, ImageAttempt, Images, db, utcnow
from tests import factories
from tests.api_helpers import GENERATE, ApiClient
from tests.page_helpers import Staff, running_task, section

PAGE = "/writer/images"
SETTINGS_PAGE = "/settings/integrations/image-generation"
PRICE = "0.0125"  # per image on the compatible server: three make $0.0375, four decimals on the button


@pytest.fixture
def a(personas):
    with db.connection_context():
        return factories.account_id("A")


@pytest.fixture
def owner(client, personas):
    return Staff(client, personas.owner)


@pytest.fixture
def api(app, personas):
    return ApiClient(app.test_client(), personas.owner)


def priced_compatible(account, fake, **extra):
    factories.settings(account, provider="openai_compatible", model="sdxl-turbo", api_key=fake.api_key,
                       base_url=fake.base_url, price_per_image=PRICE, **extra)


def priced_openai(account, fake, **extra):
    """Published prices by size and quality: the featured and in-article images are priced differently."""
    factories.settings(account, provider="openai", model="gpt-image-2", api_key=fake.api_key, base_url=fake.base_url,
                       quality="high", sizes={"featured": "1024x1024", "in_article": "1536x1024"}, **extra)


def dry_run(api, ids, **body) -> dict:
    response = api.post(GENERATE, json={"ids": ids, "dry_run": True, **body})
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def attribute(fragment: str, name: str) -> str | None:
    found = re.search(rf'\b{name}="([^"]*)"', fragment)
    return html_lib.unescape(found.group(1)) if found else None


def start_tag(html: str, element_id: str) -> str:
    """The opening tag of the element with this id (an <input> has no other)."""
    found = re.search(rf'<\w+[^>]*\bid="{re.escape(element_id)}"[^>]*>', html)
    assert found, f"no element #{element_id}"
    return found.group(0)


def generate_form(block: str, content_id: int) -> str:
    """The <form ...> tag that holds the article's Generate Images button."""
    start = block.index(f'id="generate-{content_id}"')
    return block[block.rindex("<form", 0, start):block.index(">", block.rindex("<form", 0, start)) + 1]


def button_text(block: str, element_id: str) -> str:
    return re.sub(r"<[^>]+>", "", section(block, element_id)).strip()


# --- estimates and confirmations ---------------------------------------------------------------------

@pytest.mark.parametrize("provider", ["openai_compatible", "openai"])
def test_the_generate_button_and_its_confirmation_carry_the_dry_runs_estimate(owner, api, a, provider, fake_compatible,
                                                                              fake_openai):
    if provider == "openai":
        priced_openai(a, fake_openai)
    else:
        priced_compatible(a, fake_compatible)
    content, ids = factories.article(a)
    with db.connection_context():  # made already: neither the button nor the dry run counts it
        Images.update(status="generated").where(Images.id == ids[1]).execute()
    answer = dry_run(api, ids)
    assert answer["images"] == 2 and answer["estimated_cost"] > 0
    figure = usd(Decimal(str(answer["estimated_cost"])))
    # A featured and an in-article image: at OpenAI's prices by size they differ.
    assert figure == ("$0.025" if provider == "openai_compatible" else "$0.376")

    block = section(owner.get(PAGE).get_data(as_text=True), f"article-{content.id}")
    assert button_text(block, f"generate-{content.id}") == f"Generate Images (2) · ≈ {figure}"
    assert attribute(generate_form(block, content.id), "hx-confirm") == f"Generate 2 images for ≈ {figure}?"
    # The bulk button adds these up in the browser: the same figure, for the same images.
    box = start_tag(block, f"select-{content.id}")
    assert attribute(box, "data-images") == "2"
    assert Decimal(attribute(box, "data-cost")) == Decimal(str(answer["estimated_cost"]))


def test_regenerating_a_generated_image_on_a_paid_provider_asks_first_with_its_price(owner, api, a, fake_openai):
    priced_openai(a, fake_openai)
    content, ids = factories.article(a)
    with db.connection_context():
        Images.update(status="generated").where(Images.id == ids[0]).execute()
    figure = usd(Decimal(str(dry_run(api, [ids[0]], regenerate=True)["estimated_cost"])))
    assert figure == "$0.211"
    card = section(owner.get(PAGE).get_data(as_text=True), f"image-{ids[0]}")
    form = card[card.rindex("<form", 0, card.index(f'id="regenerate-{ids[0]}"')):]
    assert attribute(form, "hx-confirm") == f"Regenerate this image for ≈ {figure}? The provider bills it again."


def test_a_free_provider_shows_no_money_and_asks_nothing(owner, a):
    factories.settings(a, provider="placeholder", model="placeholder-v1")
    content, ids = factories.article(a)
    with db.connection_context():
        Images.update(status="generated").where(Images.id == ids[0]).execute()
    html = owner.get(PAGE).get_data(as_text=True)
    block = section(html, f"article-{content.id}")
    assert button_text(block, f"generate-{content.id}") == "Generate Images (2)"
    assert "hx-confirm" not in html and "≈" not in html
    assert attribute(start_tag(block, f"select-{content.id}"), "data-cost") == "0"


def test_settings_that_cannot_generate_price_nothing_and_the_page_still_shows(owner, a, fake_openai):
    factories.settings(a, provider="openai", model="gpt-image-2", base_url=fake_openai.base_url)  # no key
    content, _ = factories.article(a)
    response = owner.get(PAGE)
    assert response.status_code == 200
    block = section(response.get_data(as_text=True), f"article-{content.id}")
    assert button_text(block, f"generate-{content.id}") == "Generate Images (3)"
    assert "hx-confirm" not in block


@pytest.mark.parametrize("budget, sentence", [
    ({"run_budget": 0.03}, "These 3 images are estimated at $0.0375, over the $0.03 budget per run"),
    ({"monthly_budget": 0.02},
     "$0.02 is left of this month's $0.02 budget, and these 3 images are estimated at $0.0375"),
])
def test_a_request_over_the_budget_is_refused_with_its_sentence_and_nothing_starts(owner, a, fake_compatible,
                                                                                     budget, sentence):
    priced_compatible(a, fake_compatible, **budget)
    content, ids = factories.article(a)
    response = owner.post("/writer/images/generate", {"content_id": str(content.id)})
    assert response.status_code == 400
    assert response.headers["HX-Retarget"] == "#toasts"
    assert sentence in html_lib.unescape(response.get_data(as_text=True))
    assert "toast-error" in response.get_data(as_text=True)
    with db.connection_context():
        assert AITaskLog.select().count() == 0
    assert [i.status for i in factories.images(ids)] == ["pending"] * 3


# --- budgets in Settings -----------------------------------------------------------------------------

FORM = {"provider": "placeholder", "model": "placeholder-v1", "api_key": "", "base_url": "", "image_type": "realistic",
        "max_in_article_images": "3", "image_format": "webp", "is_active": "on"}


def disabled_fieldset(html: str) -> str:
    """The outer HTML of the first disabled <fieldset>, nested fieldsets included."""
    start = re.search(r"<fieldset\b[^>]*\bdisabled\b[^>]*>", html).start()
    depth = 0
    for tag in re.finditer(r"<(/?)fieldset\b[^>]*>", html[start:]):
        depth += -1 if tag.group(1) else 1
        if depth == 0:
            return html[start:start + tag.end()]
    raise AssertionError("the disabled fieldset is not closed")


def saved_config(account):
    with db.connection_context():
        from jobs import image_settings

        return image_settings.settings_row(account).config


def test_a_manager_saves_both_budgets_and_sees_this_months_spend_against_them(owner, a):
    with db.connection_context():
        ImageAttempt.create(account=a, task_id="t1", image_id=1, cost=Decimal("1.25"), charged_at=utcnow(),
                            outcome="generated")
    response = owner.post(SETTINGS_PAGE, {**FORM, "monthly_budget": "25", "run_budget": "2.5"})
    assert response.status_code == 200, response.get_data(as_text=True)
    config = saved_config(a)
    assert (config["monthly_budget"], config["run_budget"]) == (25.0, 2.5)
    html = owner.get(SETTINGS_PAGE).get_data(as_text=True)
    assert attribute(start_tag(html, "monthly_budget"), "value") == "25"
    assert attribute(start_tag(html, "run_budget"), "value") == "2.5"
    assert '<label for="monthly_budget">Monthly budget (USD)</label>' in html
    assert '<label for="run_budget">Budget per run (USD)</label>' in html
    spend = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", section(html, "budget-spent"))).strip()
    assert spend == "Spent this month: $1.25 of $25.00 (remaining $23.75)."

    owner.post(SETTINGS_PAGE, {**FORM, "monthly_budget": "", "run_budget": ""})  # blank: no cap
    config = saved_config(a)
    assert (config["monthly_budget"], config["run_budget"]) == (None, None)
    html = owner.get(SETTINGS_PAGE).get_data(as_text=True)
    assert "Spent this month: $1.25 (no monthly budget)." in re.sub(r"\s+", " ", section(html, "budget-spent"))


@pytest.mark.parametrize("field", ["monthly_budget", "run_budget"])
@pytest.mark.parametrize("value", ["-1", "ten", "2000000", "nan"])
def test_a_bad_budget_is_refused_with_its_error_beside_it(owner, a, field, value):
    factories.settings(a, provider="placeholder", model="placeholder-v1", monthly_budget=5)
    response = owner.post(SETTINGS_PAGE, {**FORM, field: value})
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    error = section(html, f"{field}-error")
    assert "An amount in USD from 0 to 1000000" in error
    assert f'aria-describedby="{field}-error"' in start_tag(html, field)
    assert attribute(start_tag(html, field), "value") == value  # what was typed stays
    assert saved_config(a)["monthly_budget"] == 5.0


def test_settings_that_cannot_generate_yet_still_show_the_spend_against_the_cap(owner, a, fake_openai):
    factories.settings(a, provider="openai", model="gpt-image-2", base_url=fake_openai.base_url,
                       monthly_budget=5)  # no key yet
    html = owner.get(SETTINGS_PAGE).get_data(as_text=True)
    spend = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", section(html, "budget-spent"))).strip()
    assert spend == "Spent this month: $0.00 of $5.00 (remaining $5.00)."


def test_staff_see_the_budgets_read_only_and_cannot_post_them(client, personas, a):
    factories.settings(a, provider="placeholder", model="placeholder-v1", monthly_budget=5)
    staff = Staff(client, personas.staff)
    html = staff.get(SETTINGS_PAGE).get_data(as_text=True)
    form = section(html, "settings-form")
    assert 'id="save-settings"' not in form and "Spent this month: $0.00 of $5.00" in form
    disabled = disabled_fieldset(form)  # the browser disables every field inside it
    assert 'id="monthly_budget"' in disabled and 'id="run_budget"' in disabled
    refused = staff.post(SETTINGS_PAGE, {**FORM, "monthly_budget": "500"})
    assert refused.status_code == 403
    assert saved_config(a)["monthly_budget"] == 5.0


# --- Cancel ------------------------------------------------------------------------------------------

def in_flight(account, image_id, task_id):
    """The image's provider call has started: a cancel lets it finish."""
    with db.connection_context():
        ImageAttempt.create(account=account, task_id=task_id, image_id=image_id, called_at=utcnow())


def cancel_url(task_id):
    return f"/writer/tasks/{task_id}/cancel"


def test_a_running_panel_has_a_cancel_form_that_works_without_javascript(owner, a):
    factories.settings(a, provider="placeholder", model="placeholder-v1")
    _, ids = factories.article(a)
    task_id = running_task(a, ids)
    panel = section(owner.get(f"{PAGE}?task={task_id}").get_data(as_text=True), "progress")
    form = panel[panel.rindex("<form", 0, panel.index('id="progress-cancel"')):]
    assert attribute(form, "action") == cancel_url(task_id) and attribute(form, "method") == "post"
    assert 'name="csrf_token"' in form and attribute(form, "hx-post") == cancel_url(task_id)

    response = owner.post(cancel_url(task_id), {"csrf_token": owner.token}, htmx=False, csrf=False)
    assert response.status_code == 302 and response.headers["Location"].endswith(f"{PAGE}?task={task_id}")
    assert [i.status for i in factories.images(ids)] == ["pending"] * 3
    page = owner.get(response.headers["Location"]).get_data(as_text=True)
    assert "Canceled: 3 images not started." in page  # the flash
    panel = section(page, "progress")
    assert "hx-trigger" not in panel and 'id="progress-cancel"' not in panel
    assert 'class="final final-canceled"' in panel and "Canceled: 0 images generated, 3 not started" in panel


def test_cancel_answers_the_panel_canceling_and_the_articles_with_their_images_pending(owner, a):
    factories.settings(a, provider="placeholder", model="placeholder-v1")
    content, ids = factories.article(a)
    task_id = running_task(a, ids)  # the first is generating: its call has started
    in_flight(a, ids[0], task_id)
    response = owner.post(cancel_url(task_id))
    assert response.status_code == 200
    html = html_lib.unescape(response.get_data(as_text=True))
    assert "Canceled: 2 images not started; 1 in flight finishes (billed by the provider)." in html
    panel = section(html, "progress")
    assert 'id="progress-canceling"' in panel and "Canceling…" in panel and 'id="progress-cancel"' not in panel
    assert "are billed by the provider" in section(panel, "canceling-note")
    assert attribute(panel, "hx-trigger") == "every 1s"  # it follows the call in flight to its end
    block = section(html, f"article-{content.id}")
    assert 'hx-swap-oob="true"' in block and block.count("image-card status-pending") == 2
    assert [i.status for i in factories.images(ids)] == ["generating", "pending", "pending"]

    with db.connection_context():  # the call in flight ends: the last poll shows the run canceled
        Images.update(status="generated").where(Images.id == ids[0]).execute()
        from jobs.tasks import engine_for

        engine_for(task_id).finish_if_last()
    polled = owner.get(f"/writer/tasks/{task_id}/progress", htmx=True).get_data(as_text=True)
    panel = section(polled, "progress")
    assert "hx-trigger" not in panel and "Canceled: 1 image generated, 2 not started" in panel
    assert "toast-info" in polled and "toast-error" not in polled


def test_canceling_another_accounts_or_a_missing_task_is_a_404(client, personas, a):
    with db.connection_context():
        b = factories.account_id("B")
    factories.settings(b, provider="placeholder", model="placeholder-v1")
    _, ids = factories.article(b)
    theirs = running_task(b, ids)
    owner = Staff(client, personas.owner)
    for task_id in (theirs, uuid.uuid4().hex):
        response = owner.post(cancel_url(task_id))
        assert response.status_code == 404
        assert "Task not found." in response.get_data(as_text=True)
    with db.connection_context():
        assert AITaskLog.get(AITaskLog.task_id == theirs).canceled_at is None
    assert [i.status for i in factories.images(ids)] == ["generating", "queued", "queued"]


def test_canceling_a_task_that_ended_is_a_409_toast(owner, a):
    factories.settings(a, provider="placeholder", model="placeholder-v1")
    _, ids = factories.article(a)
    task_id = running_task(a, ids, statuses=["generated"] * 3)
    with db.connection_context():
        AITaskLog.update(state="done").where(AITaskLog.task_id == task_id).execute()
    response = owner.post(cancel_url(task_id))
    assert response.status_code == 409
    assert response.headers["HX-Retarget"] == "#toasts"
    assert "The task has ended (done); there is nothing to cancel." in response.get_data(as_text=True)
    plain = owner.post(cancel_url(task_id), {"csrf_token": owner.token}, htmx=False, csrf=False)
    assert plain.status_code == 302 and plain.headers["Location"].endswith(f"?task={task_id}")


def test_cancel_needs_a_csrf_token_and_staff_may_cancel(client, personas, a):
    factories.settings(a, provider="placeholder", model="placeholder-v1")
    _, ids = factories.article(a)
    task_id = running_task(a, ids)
    staff = Staff(client, personas.staff)
    assert staff.post(cancel_url(task_id), csrf=False).status_code == 403
    with db.connection_context():
        assert AITaskLog.get(AITaskLog.task_id == task_id).canceled_at is None
    assert staff.post(cancel_url(task_id)).status_code == 200
    assert [i.status for i in factories.images(ids)] == ["pending"] * 3


def test_without_redis_nothing_is_canceled_and_the_answer_says_to_try_again(owner, a, monkeypatch):
    import redis

    factories.settings(a, provider="placeholder", model="placeholder-v1")
    _, ids = factories.article(a)
    task_id = running_task(a, ids)
    # The account's call gate lives in Redis: without it a call could start in the middle of the cancel.
    monkeypatch.setattr("webapp.images_page.get_redis", lambda: redis.Redis(host="127.0.0.1", port=1))
    response = owner.post(cancel_url(task_id))
    assert response.status_code == 503 and "nothing was canceled" in response.get_data(as_text=True)
    with db.connection_context():
        assert AITaskLog.get(AITaskLog.task_id == task_id).canceled_at is None
    assert [i.status for i in factories.images(ids)] == ["generating", "queued", "queued"]


def test_a_read_only_panel_offers_no_retry_and_a_finished_one_no_cancel(app, owner, a):
    from flask import g, render_template

    from webapp.images_page import progress_context

    factories.settings(a, provider="placeholder", model="placeholder-v1")
    _, ids = factories.article(a)
    task_id = running_task(a, ids, statuses=["generated", "failed", "generated"])
    with db.connection_context():
        AITaskLog.update(state="done").where(AITaskLog.task_id == task_id).execute()
    panel = section(owner.get(f"{PAGE}?task={task_id}").get_data(as_text=True), "progress")
    assert 'id="progress-retry"' in panel and 'id="progress-cancel"' not in panel
    with app.test_request_context(), db.connection_context():
        g.account_id = a
        progress = progress_context(task_id)
        shown = render_template("images/_progress.html", progress=progress, read_only=True)
    assert 'id="progress-retry"' not in shown and "1 failed" in shown
