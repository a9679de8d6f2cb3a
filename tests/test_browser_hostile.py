"""Markup from outside — a provider's error text, a prompt, an article title, a job's arguments and
exception — never runs as script in Chromium, on the staff pages or on rq-dashboard's pages as an admin.
The Content Security Policy lets only the app's own script files run (and rq-dashboard's own inline
scripts, by hash); these tests also check that the pages still work under it."""


import pytest
from rq import Queue

from models import Images, db
from tests import factories
from tests.browser_fixtures import TIMEOUT_MS, logged_in_page
from tests.conftest import Personas, wait_for
from tests.test_browser import shot

pytestmark = [pytest.mark.browser, pytest.mark.worker]

HOSTILE = '<img src=x onerror="window.__xss=(window.__xss||0)+1"><script>window.__xss=99</script>'


def open_as(chromium, live_server, user):
    context, page = logged_in_page(chromium, live_server, user, Personas.password)
    page.on("dialog", lambda dialog: (_ for _ in ()).throw(AssertionError(f"a dialog opened: {dialog.message}")))
    page.console_errors = []
    page.on("console", lambda message: message.type == "error" and page.console_errors.append(message.text))
    return context, page


def ran(page) -> int:
    return page.evaluate("window.__xss || 0")


def test_no_hostile_text_runs_on_the_staff_pages(chromium, live_server, personas, worker):
    a = factories.account_id("A")
    factories.settings(a, provider="placeholder")
    content, ids = factories.article(a, title=f"Title {HOSTILE}", prompts=(f"Prompt {HOSTILE}", "fine"))
    with db.connection_context():
        Images.update(status="failed", error=f"Provider said {HOSTILE}").where(Images.id == ids[0]).execute()
    context, page = open_as(chromium, live_server, personas.owner)
    try:
        for path in ("/", "/writer/images", f"/writer/images/articles/{content.id}", "/thinker/prompts",
                     "/settings/integrations/image-generation"):
            page.goto(path)
            page.wait_for_load_state("networkidle")
            assert ran(page) == 0, path
        page.goto("/writer/images")
        assert "Provider said" in page.locator(f"#image-{ids[0]}").inner_text()  # shown, as text
        shot(page, "hostile-staff-pages.png", full_page=True)
    finally:
        context.close()


def test_no_hostile_job_data_runs_on_rq_dashboard_and_it_still_works(chromium, live_server, personas, worker,
                                                                   redis_conn):
    job = Queue("images", connection=redis_conn).enqueue("tests.job_helpers.always_fails", f"boom {HOSTILE}",
                                                          description=f"hostile {HOSTILE}")
    wait_for(lambda: job.get_status(refresh=True) == "failed", timeout=30, message="the hostile job to fail")
    context, page = open_as(chromium, live_server, personas.admin)
    try:
        for path in ("/rq/", "/rq/0/view/jobs", "/rq/0/view/jobs/images/failed/8/asc/1",
                     f"/rq/0/view/job/{job.id}"):
            page.goto(path)
            page.wait_for_load_state("networkidle")
            assert ran(page) == 0, path
        # The dashboard's own scripts ran under the policy: the job page filled in the job's details.
        page.goto(f"/rq/0/view/job/{job.id}")
        page.wait_for_function("document.body.innerText.includes('always_fails')", timeout=TIMEOUT_MS)
        assert job.id in page.content()
        shot(page, "hostile-rq-dashboard-job.png", full_page=True)
        # What the policy refused was the injected markup (rq-dashboard has no inline handlers of its own).
        refused = [m for m in page.console_errors if "Content Security Policy" in m]
        assert refused and all("inline event handler" in m or "inline script" in m for m in refused), refused
        page.goto("/rq/")
        page.wait_for_function("document.body.innerText.includes('images')", timeout=TIMEOUT_MS)  # queues listed
    finally:
        context.close()
