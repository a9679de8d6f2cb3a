"""Spending under control in headless Debian Chromium, against the real app and a real RQ worker: a paid
provider's estimate on the buttons and in the confirmation before anything is sent, and Cancel on a
running panel. Screenshots land in test-artifacts/.
"""

import contextlib
import re

import pytest

from models import AITaskLog, db
from tests import factories
from tests.browser_fixtures import ARTIFACTS, logged_in_page
from tests.conftest import Personas, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.worker]

PRICE = "0.0125"  # per image on the compatible server


@pytest.fixture
def page(chromium, live_server, personas, worker):
    context, page = logged_in_page(chromium, live_server, personas.owner, Personas.password)
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    with contextlib.suppress(Exception):
        shot(page, "control-last-page.png", full_page=True)
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture
def account(personas, fake_compatible):
    """Account A on the fake OpenAI-compatible server at a price per image (a paid provider)."""
    with db.connection_context():
        a = factories.account_id("A")
    factories.settings(a, provider="openai_compatible", model="sdxl-turbo", api_key=fake_compatible.api_key,
                       base_url=fake_compatible.base_url, price_per_image=PRICE, image_format="png")
    return a


def shot(page, name, full_page=False):
    page.screenshot(path=str(ARTIFACTS / name), full_page=full_page, animations="disabled")


def tasks() -> int:
    with db.connection_context():
        return AITaskLog.select().count()


def test_a_paid_provider_shows_the_estimate_and_asks_with_the_same_figures_before_sending(page, account):
    kites, kite_ids = factories.article(account, title="Kites", prompts=("A red kite", "Two kites", "A spool"))
    sea, _ = factories.article(account, title="The sea", prompts=("A lighthouse", "Gulls"))
    dialogs, accept = [], []

    def answer(dialog):
        dialogs.append(dialog.message)
        dialog.accept() if accept else dialog.dismiss()

    page.on("dialog", answer)
    page.goto("/writer/images")
    button = page.locator(f"#generate-{kites.id}")
    assert button.inner_text() == "Generate Images (3) · ≈ $0.0375"
    assert page.locator(f"#generate-{sea.id}").inner_text() == "Generate Images (2) · ≈ $0.025"

    # The bulk button follows the ticked articles, adding up the same figures.
    bulk = page.locator("#generate-selected")
    assert bulk.inner_text() == "Generate selected"
    page.locator(f"#select-{kites.id}").check()
    page.locator(f"#select-{sea.id}").check()
    assert bulk.inner_text() == "Generate selected (5) · ≈ $0.0625"
    shot(page, "control-bulk-selected.png")
    bulk.click()
    page.wait_for_timeout(500)  # Playwright hands the dialog to `answer` while it waits
    assert dialogs == ["Generate 5 images for ≈ $0.0625?"]
    assert page.locator("#bulk").get_attribute("hx-confirm") == "Generate 5 images for ≈ $0.0625?"
    page.locator(f"#select-{kites.id}").uncheck()
    assert bulk.inner_text() == "Generate selected (2) · ≈ $0.025"
    page.locator(f"#select-{sea.id}").uncheck()
    assert page.locator("#bulk").get_attribute("hx-confirm") is None
    shot(page, "control-estimates.png", full_page=True)

    button.click()
    page.wait_for_timeout(500)
    assert dialogs[1:] == ["Generate 3 images for ≈ $0.0375?"]
    assert tasks() == 0 and page.locator("#progress[data-task-id]").count() == 0  # dismissed: nothing sent

    accept.append(True)
    button.click()
    page.locator("#progress[data-task-id]").wait_for()
    assert dialogs[2:] == ["Generate 3 images for ≈ $0.0375?"]
    assert tasks() == 1
    shot(page, "control-confirmed-started.png")
    page.wait_for_selector("#progress .final:has-text('3 images generated successfully')")
    assert page.locator("#progress .totals").inner_text().startswith("Cost: $0.0375")
    assert [i.status for i in factories.images(kite_ids)] == ["generated"] * 3

    # What the provider charged is this month's spend in Settings.
    page.goto("/settings/integrations/image-generation")
    assert page.locator("#budget-spent").inner_text() == "Spent this month: $0.0375 (no monthly budget)."
    shot(page, "control-settings-budget.png", full_page=True)


def test_cancel_stops_a_slow_run_the_call_in_flight_finishes_and_the_rest_are_pending_again(page, account,
                                                                                             fake_compatible):
    fake_compatible.set_load(latency=4)  # a real provider's pace: time to press Cancel mid-call
    content, ids = factories.article(account, title="Slow", prompts=("One", "Two", "Three", "Four"))
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto("/writer/images")
    page.locator(f"#generate-{content.id}").click()
    panel = page.locator("#progress[data-task-id]")
    panel.wait_for()
    wait_for(lambda: fake_compatible.call_count == 1, timeout=30, message="the first call")
    cancel = page.locator("#progress-cancel")
    cancel.wait_for()
    shot(page, "control-running-with-cancel.png")
    cancel.click()

    page.locator("#progress-canceling").wait_for()
    assert "Canceling…" in page.locator("#progress .progress-head").inner_text()
    assert "are billed by the provider" in page.locator("#canceling-note").inner_text()
    assert page.locator("#progress-cancel").count() == 0
    toast = page.locator("#toasts .toast-info", has_text="Canceled:")
    assert toast.first.inner_text() == "Canceled: 3 images not started; 1 in flight finishes (billed by the provider)."
    shot(page, "control-canceling.png")

    final = page.locator("#progress .final")
    final.wait_for(timeout=30_000)
    assert final.inner_text() == "Canceled: 1 image generated, 3 not started"
    assert "final-canceled" in final.get_attribute("class") and "final-bad" not in final.get_attribute("class")
    assert page.locator("#progress").get_attribute("hx-trigger") is None
    rows = page.eval_on_selector_all("#progress .progress-row", "rows => rows.map(r => r.dataset.status)")
    assert rows == ["generated", "pending", "pending", "pending"]
    block = page.locator(f"#article-{content.id}")
    assert block.locator(".image-card.status-pending").count() == 3
    assert block.locator(".image-card.status-generated").count() == 1
    assert re.fullmatch(r"Generate Images \(3\) · ≈ \$0\.0375", page.locator(f"#generate-{content.id}").inner_text())
    shot(page, "control-canceled.png", full_page=True)

    # Polling has stopped: no request for the panel any more.
    polls = []
    page.on("request", lambda request: "/progress" in request.url and polls.append(request.url))
    page.wait_for_timeout(2500)
    assert polls == []
    assert fake_compatible.call_count == 1  # the images let go were never sent
    assert [i.status for i in factories.images(ids)] == ["generated", "pending", "pending", "pending"]
