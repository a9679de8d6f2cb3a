"""The Runs and Usage pages: every run of the account with who started it, what it made and what it cost,
one run's progress panel, and a month's spend — from runs made by the real engine, never another
account's."""

import contextlib
import datetime as dt
import re
from decimal import Decimal

import pytest
from flask import template_rendered

from jobs.cancel import cancel_task
from jobs.storage.images import ImageRejected
from jobs.tasks import run_ai_item, start_task
from models import ImageAttempt, db
from tests import factories
from tests.fakes.openai_server import FakeOpenAICompatible
from tests.flow import parked_queue
from tests.page_helpers import Staff, section
from webapp.images_page import money

RUNS = "/writer/runs"
USAGE = "/writer/usage"
MISSING_TASK = "f" * 32
PRICE = Decimal("0.002")


@pytest.fixture
def queue(redis_conn):
    parked = parked_queue(redis_conn)
    yield parked
    parked.empty()


@pytest.fixture
def accounts(personas):
    with db.connection_context():
        return factories.account_id("A"), factories.account_id("B")


@pytest.fixture
def server():
    """A self-hosted server at a price per image the account sets: runs that cost something."""
    with FakeOpenAICompatible(models=("sdxl-turbo", "flux-local")) as fake:
        fake.answer_with = "b64"
        yield fake


def use_server(account, server, model="sdxl-turbo", price=PRICE, **extra):
    factories.settings(account, provider="openai_compatible", model=model, base_url=server.base_url,
                       api_key=server.api_key, price_per_image=str(price), image_format="png", **extra)


def start(account, ids, user, queue) -> str:
    with db.connection_context():
        return start_task("generate_images_from_prompts", {"ids": ids}, account, queue=queue,
                          created_by=user.id if user else None)["task_id"]


def run(account, ids, user, queue) -> str:
    """A run as a worker makes it: the parent job (PREP, the fan-out into the parked queue), then each
    image's job inline. The parent is performed as RQ's job, since it enqueues through its own job."""
    task_id = start(account, ids, user, queue)
    queue.fetch_job(task_id).perform()
    for image_id in ids:
        # A failed image's job raises (a worker files it as failed); the run goes on with the next.
        with contextlib.suppress(ImageRejected):
            run_ai_item(task_id, image_id)
    return task_id


def costs(ids) -> Decimal:
    return sum((i.cost for i in factories.images(ids) if i.cost is not None), Decimal(0))


def rows(html: str) -> list[str]:
    """The task ids of the Runs table, in page order."""
    return re.findall(r'<tr id="run-(\w+)"', html)


@pytest.fixture
def contexts(app):
    """The context of each template rendered, by name."""
    seen = {}

    def record(sender, template, context, **extra):
        seen[template.name] = context

    template_rendered.connect(record, app)
    yield seen
    template_rendered.disconnect(record, app)


# --- Runs --------------------------------------------------------------------------------------------


def test_runs_are_listed_newest_first_with_who_started_them_their_articles_counts_cost_and_state(
        app, personas, accounts, queue, server):
    a, _ = accounts
    use_server(a, server)
    _, kites = factories.article(a, title="Kites", prompts=("A red kite", "Two kites"))
    _, lights = factories.article(a, title="Lighthouses", prompts=("A lighthouse", "Its lamp", "The keeper"))
    _, later = factories.article(a, title="Later", prompts=("Not yet",))
    first = run(a, kites, personas.staff, queue)
    server.script("truncated_image")  # the provider answers, and bills, an image that cannot be stored
    second = run(a, lights, personas.owner, queue)
    third = start(a, later, personas.staff, queue)
    with db.connection_context():
        cancel_task(third, a, queue.connection)

    html = Staff(app.test_client(), personas.staff).get(RUNS).get_data(as_text=True)
    assert rows(html) == [third, second, first]
    newest, middle, oldest = (section(html, f"run-{t}") for t in (third, second, first))
    assert "staff@a.test" in oldest and "Kites" in oldest and "Lighthouses" not in oldest
    assert "2 generated · 0 failed · 0 not started · 2 in all" in oldest
    assert money(costs(kites)) == "$0.004" and "$0.004" in oldest
    assert '<span class="badge badge-generated">done</span>' in oldest
    assert "owner@a.test" in middle and "Lighthouses" in middle
    assert "2 generated · 1 failed · 0 not started · 3 in all" in middle
    assert costs(lights) == 3 * PRICE and money(costs(lights)) in middle  # the damaged image was paid for
    assert "0 generated · 0 failed · 1 not started · 1 in all" in newest and ">canceled</span>" in newest
    assert "$0.00" in newest
    assert f'href="/writer/runs/{first}"' in oldest
    assert 'href="/writer/images#article-' in oldest


def test_a_run_still_going_is_listed_with_what_it_has_made_so_far(app, personas, accounts, queue):
    a, _ = accounts
    factories.settings(a, provider="placeholder", image_format="png")
    _, ids = factories.article(a, title="Half way")
    task_id = start(a, ids, personas.staff, queue)
    queue.fetch_job(task_id).perform()
    run_ai_item(task_id, ids[0])
    row = section(Staff(app.test_client(), personas.staff).get(RUNS).get_data(as_text=True), f"run-{task_id}")
    assert "1 generated · 0 failed · 0 not started · 3 in all" in row
    assert '<span class="badge badge-generating">running</span>' in row
    assert re.findall(r"<td>(.*?)</td>", row)[-1] == "—"  # no duration until it ends


def test_the_runs_page_shows_twenty_runs_a_page_with_previous_and_next_links(app, personas, accounts, queue):
    a, _ = accounts
    factories.settings(a, provider="placeholder")
    started = [start(a, factories.article(a, title=f"Article {n}", prompts=(f"Picture {n}",))[1], personas.staff,
                     queue) for n in range(21)]
    staff = Staff(app.test_client(), personas.staff)
    first = staff.get(RUNS).get_data(as_text=True)
    assert rows(first) == started[::-1][:20]
    assert "Page 1 of 2" in first and 'href="/writer/runs?page=2" rel="next"' in first and 'rel="prev"' not in first
    second = staff.get(f"{RUNS}?page=2").get_data(as_text=True)
    assert rows(second) == [started[0]] and "Article 0" in second
    assert 'href="/writer/runs?page=1" rel="prev"' in second and 'rel="next"' not in second
    beyond = staff.get(f"{RUNS}?page=7")
    assert beyond.status_code == 302 and beyond.headers["Location"].endswith("/writer/runs?page=2")
    assert rows(staff.get(f"{RUNS}?page=x").get_data(as_text=True)) == rows(first)  # an odd page is the first


def test_an_account_without_runs_is_told_where_to_start_one(app, personas):
    html = Staff(app.test_client(), personas.staff).get(RUNS).get_data(as_text=True)
    assert "No runs yet — generate images on the" in section(html, "no-runs")
    assert 'href="/writer/images"' in section(html, "no-runs") and "<table" not in html


def test_another_accounts_runs_are_not_listed_and_their_run_page_answers_like_a_missing_one(
        app, personas, accounts, queue):
    a, b = accounts
    factories.settings(a, provider="placeholder")
    factories.settings(b, provider="placeholder")
    _, a_ids = factories.article(a, title="Ours")
    _, b_ids = factories.article(b, title="Theirs")
    ours = run(a, a_ids, personas.staff, queue)
    theirs = run(b, b_ids, personas.outsider, queue)
    staff = Staff(app.test_client(), personas.staff)
    html = staff.get(RUNS).get_data(as_text=True)
    assert rows(html) == [ours]
    assert theirs not in html and "Theirs" not in html and "outsider@b.test" not in html
    their_page, missing = staff.get(f"{RUNS}/{theirs}"), staff.get(f"{RUNS}/{MISSING_TASK}")
    assert their_page.status_code == missing.status_code == 404
    assert their_page.get_data() == missing.get_data() and b"Task not found." in their_page.get_data()
    outsider = Staff(app.test_client(), personas.outsider)
    assert rows(outsider.get(RUNS).get_data(as_text=True)) == [theirs]
    assert outsider.get(f"{RUNS}/{ours}").status_code == 404


def test_a_run_page_shows_its_panel_polling_while_it_runs_and_read_only_once_it_ended(
        app, personas, accounts, queue, server, contexts):
    a, _ = accounts
    use_server(a, server)
    _, ids = factories.article(a, title="Followed")
    task_id = start(a, ids, personas.staff, queue)
    queue.fetch_job(task_id).perform()
    staff = Staff(app.test_client(), personas.staff)

    going = section(staff.get(f"{RUNS}/{task_id}").get_data(as_text=True), "progress")
    assert f'hx-get="/writer/tasks/{task_id}/progress?view=run"' in going and 'hx-trigger="every 1s"' in going
    assert all(f'data-image-id="{i}"' in going for i in ids)
    assert contexts["runs/run.html"]["read_only"] is False

    server.script("truncated_image")
    for image_id in ids:
        with contextlib.suppress(ImageRejected):
            run_ai_item(task_id, image_id)
    ended = staff.get(f"{RUNS}/{task_id}")
    panel = section(ended.get_data(as_text=True), "progress")
    assert ended.status_code == 200 and "hx-trigger" not in panel
    assert "2 images generated, 1 failed" in panel and "the image is truncated" in panel
    assert contexts["runs/run.html"]["read_only"] is True
    # History, not a place to act: the Images page offers the retry, the run's page does not.
    assert 'id="progress-retry"' not in panel
    assert 'id="progress-retry"' in staff.get(f"/writer/images?task={task_id}").get_data(as_text=True)
    # The run page's own poll that sees the end answers the same read-only panel, with no article blocks.
    polled = staff.get(f"/writer/tasks/{task_id}/progress?view=run", htmx=True)
    html = polled.get_data(as_text=True)
    assert "hx-trigger" not in section(html, "progress") and 'id="progress-retry"' not in html
    assert 'id="article-' not in html  # no article blocks: the run page has none to refresh
    images_poll = staff.get(f"/writer/tasks/{task_id}/progress", htmx=True)
    assert 'id="progress-retry"' in images_poll.get_data(as_text=True)


# --- Usage -------------------------------------------------------------------------------------------


def test_usage_shows_the_months_spend_by_model_and_by_day_as_the_images_cost(
        app, personas, accounts, queue, server):
    a, b = accounts
    use_server(a, server, monthly_budget=5)
    _, paid = factories.article(a, title="Paid", prompts=("One", "Two", "Three"))
    server.script("truncated_image")
    run(a, paid, personas.staff, queue)
    factories.settings(a, provider="placeholder", model="placeholder-v1")
    _, free = factories.article(a, title="Free", prompts=("Gratis",))
    run(a, free, personas.staff, queue)
    use_server(b, server, model="flux-local", price="0.5")
    _, b_ids = factories.article(b, title="Theirs", prompts=("Dear", "Dearer"))
    run(b, b_ids, personas.outsider, queue)

    spent = costs(paid + free)
    assert spent == 3 * PRICE and costs(b_ids) == Decimal(1)
    with db.connection_context():
        today = ImageAttempt.select().where(ImageAttempt.account == a).first().charged_at.date().isoformat()
    html = Staff(app.test_client(), personas.staff).get(USAGE).get_data(as_text=True)
    summary = section(html, "usage-summary")
    assert f'<td id="spent">{money(spent)}</td>' in summary
    assert '<td id="images-generated">3</td>' in summary and '<td id="images-failed">1</td>' in summary
    by_model = section(html, "usage-by-model")
    assert f'<tr data-model="sdxl-turbo"><td>sdxl-turbo</td><td>2</td><td>{money(3 * PRICE)}</td></tr>' in by_model
    assert '<tr data-model="placeholder-v1"><td>placeholder-v1</td><td>1</td><td>$0.00</td></tr>' in by_model
    assert f'<tr data-day="{today}"><td>{today}</td><td>{money(spent)}</td></tr>' in section(html, "usage-by-day")
    budget = section(html, "usage-budget")
    assert '<td id="monthly-limit">$5.00</td>' in budget and f'<td id="budget-spent">{money(spent)}</td>' in budget
    assert f'<td id="remaining">{money(Decimal(5) - spent)}</td>' in budget
    # Account B's dear images never count here, nor its model.
    assert "flux-local" not in html and "$1.00" not in html and "$1.006" not in html

    theirs = Staff(app.test_client(), personas.outsider).get(USAGE).get_data(as_text=True)
    assert '<td id="spent">$1.00</td>' in theirs and "sdxl-turbo" not in theirs
    assert "No monthly budget" in section(theirs, "usage-budget")


def test_last_months_spend_is_shown_beside_this_months_and_its_own_page_is_a_link_away(
        app, personas, accounts, queue, server):
    a, _ = accounts
    use_server(a, server)
    _, ids = factories.article(a, title="Spread", prompts=("Early", "Late"))
    run(a, ids, personas.staff, queue)
    staff = Staff(app.test_client(), personas.staff)
    this_month = re.search(r"<h1>Usage · (\d{4}-\d{2})</h1>", staff.get(USAGE).get_data(as_text=True)).group(1)
    with db.connection_context():
        # The first image's charge, as if it had been recorded on the last day of the month before.
        attempt = ImageAttempt.get(ImageAttempt.image_id == ids[0])
        last_day = attempt.charged_at.replace(day=1, hour=12) - dt.timedelta(days=1)
        ImageAttempt.update(charged_at=last_day, ended_at=last_day).where(ImageAttempt.id == attempt.id).execute()
    previous = last_day.strftime("%Y-%m")

    html = staff.get(USAGE).get_data(as_text=True)
    assert f'<td id="spent">{money(PRICE)}</td>' in html and f'<td id="previous-spent">{money(PRICE)}</td>' in html
    assert f'href="/writer/usage?month={previous}" rel="prev"' in html and 'rel="next"' not in html
    before = staff.get(f"{USAGE}?month={previous}").get_data(as_text=True)
    assert f"<h1>Usage · {previous}</h1>" in before
    day = last_day.date().isoformat()
    assert f'<tr data-day="{day}"><td>{day}</td><td>{money(PRICE)}</td></tr>' in before
    assert f'href="/writer/usage?month={this_month}" rel="next"' in before
    assert '<td id="images-generated">1</td>' in before


@pytest.mark.parametrize("month", ["2026-13", "soon", "1999-01"])
def test_a_bad_month_says_what_was_wrong_and_shows_this_month(app, personas, month):
    staff = Staff(app.test_client(), personas.staff)
    this_month = staff.get(USAGE).get_data(as_text=True)
    response = staff.get(f"{USAGE}?month={month}")
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "month must be YYYY-MM, such as 2026-12. Showing this month instead." in section(html, "month-error")
    assert re.search(r"<h1>Usage · \d{4}-\d{2}</h1>", html).group(0) in this_month


# --- Who reaches them ---------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["staff", "owner"])
def test_staff_and_managers_reach_both_pages_from_the_navigation(app, personas, who):
    user = Staff(app.test_client(), getattr(personas, who))
    html = user.get(RUNS).get_data(as_text=True)
    nav = html[html.index('<nav aria-label="Main">'):html.index("</nav>")]
    assert nav.index(">Images<") < nav.index(">Runs<") < nav.index(">Usage<")
    assert user.get(USAGE).status_code == 200


def test_both_pages_need_a_login(client, personas):
    for url in (RUNS, USAGE, f"{RUNS}/{MISSING_TASK}"):
        response = client.get(url)
        assert response.status_code == 302 and "/login" in response.headers["Location"]

