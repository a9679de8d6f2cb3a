"""The Images page and its fragments: listing, Generate, Retry failed, Regenerate, inline prompt edits."""

import pytest

from models import AIPrompt, AITaskLog, Content, Images, db
from tests import factories
from tests.conftest import wait_for
from tests.page_helpers import Staff, ids_in, park_jobs, running_task, section

PAGE = "/writer/images"
GENERATE = "/writer/images/generate"


@pytest.fixture
def parked(monkeypatch, redis_conn):
    queue = park_jobs(monkeypatch)
    yield queue
    queue.empty()


@pytest.fixture
def a(personas):
    with db.connection_context():
        account = factories.account_id("A")
    factories.settings(account, provider="placeholder", model="placeholder-v1")
    return account


@pytest.fixture
def owner(client, personas):
    return Staff(client, personas.owner)


def test_each_article_shows_featured_then_in_article_images_in_position_order(owner, a):
    content, ids = factories.article(a, title="Kites", meta_title="Kites: a guide",
                                     prompts=("A red kite", "Two kites", "A spool"))
    html = owner.get(PAGE).get_data(as_text=True)
    block = section(html, f"article-{content.id}")
    assert "Kites" in block and "Meta title: Kites: a guide" in block
    positions = [block.index(f'id="image-{i}"') for i in ids]
    assert positions == sorted(positions)
    assert block.index("Featured image") < block.index("In-article image 1") < block.index("In-article image 2")
    for prompt in ("A red kite", "Two kites", "A spool"):
        assert prompt in block
    assert "badge-pending" in block


def test_generate_images_carries_exactly_the_pending_ids_that_have_prompts(owner, a):
    content, ids = factories.article(a)
    with db.connection_context():
        Images.update(prompt="").where(Images.id == ids[2]).execute()
        Images.update(status="generated").where(Images.id == ids[1]).execute()
    block = section(owner.get(PAGE).get_data(as_text=True), f"article-{content.id}")
    generate = section(block, f"generate-{content.id}")
    assert "Generate Images (1)" in generate
    form = block[:block.index(f'id="generate-{content.id}"')]
    assert ids_in(form) == [ids[0]]


def test_an_article_with_nothing_pending_says_so_instead_of_a_button(owner, a):
    content, ids = factories.article(a)
    with db.connection_context():
        Images.update(status="generated").where(Images.id.in_(ids)).execute()
    block = section(owner.get(PAGE).get_data(as_text=True), f"article-{content.id}")
    assert "No pending images with prompts found" in block
    assert f'id="generate-{content.id}"' not in block


def test_desktop_and_mobile_images_show_only_when_the_settings_turn_them_on(owner, a):
    with db.connection_context():
        content = Content.create(account=a, title="Wide and tall")
        for kind in ("featured", "desktop", "mobile"):
            Images.create(account=a, content=content, image_type=kind, position=0, prompt=f"{kind} view")
        for n in range(1, 6):
            Images.create(account=a, content=content, image_type="in_article", position=n, prompt=f"scene {n}")
    block = section(owner.get(PAGE).get_data(as_text=True), f"article-{content.id}")
    assert "desktop view" not in block and "mobile view" not in block and "scene 4" not in block
    assert "4 more images turned off" in block
    factories.settings(a, desktop_enabled=True, mobile_enabled=True, max_in_article_images=5)
    block = section(owner.get(PAGE).get_data(as_text=True), f"article-{content.id}")
    assert "Desktop image" in block and "Mobile image" in block and "In-article image 5" in block
    assert "turned off" not in block


def test_generated_images_show_a_thumbnail_linked_to_full_size_with_cost_provider_and_model(owner, a):
    content, ids = factories.article(a)
    with db.connection_context():
        Images.update(status="generated", image_url=f"/media/images/{ids[0]}.webp?v=abc", provider="openai",
                      model="gpt-image-2", cost=0.04, image_format="webp").where(Images.id == ids[0]).execute()
        Images.update(status="failed", error="OpenAI rejected the prompt.").where(Images.id == ids[1]).execute()
    block = section(owner.get(PAGE).get_data(as_text=True), f"article-{content.id}")
    card = section(block, f"image-{ids[0]}")
    assert f'<a href="/media/images/{ids[0]}.webp?v=abc"' in card and "<img" in card
    assert "$0.04" in card and "openai" in card and "gpt-image-2" in card and "Regenerate" in card
    failed = section(block, f"image-{ids[1]}")
    assert "OpenAI rejected the prompt." in failed and "<img" not in failed
    retry = block[block.index(f'id="retry-{content.id}"') - 600:block.index(f'id="retry-{content.id}"')]
    assert ids_in(retry)[-1] == ids[1] and "Retry failed (1)" in block


def test_a_new_account_is_told_how_to_create_content(owner, a):
    html = owner.get(PAGE).get_data(as_text=True)
    assert "No articles yet" in html
    assert "/v1/writer/content/" in html and "curl -X POST" in html and "seed-demo" in html


def test_articles_come_twenty_to_a_page_and_filter_by_status(owner, a):
    made = [factories.article(a, title=f"Article {n:02d}", prompts=("p",))[0] for n in range(25)]
    with db.connection_context():
        Images.update(status="failed").where(Images.content == made[3].id).execute()
    first = owner.get(PAGE).get_data(as_text=True)
    assert first.count('class="card article"') == 20 and "Page 1 of 2" in first and "Article 24" in first
    second = owner.get(PAGE + "?page=2").get_data(as_text=True)
    assert second.count('class="card article"') == 5 and "Article 00" in second
    failed = owner.get(PAGE + "?status=failed").get_data(as_text=True)
    assert failed.count('class="card article"') == 1 and "Article 03" in failed
    assert "No articles with generated images" in owner.get(PAGE + "?status=generated").get_data(as_text=True)
    assert owner.get(PAGE + "?page=99").status_code == 200  # past the end: the last page


def test_the_page_costs_the_same_number_of_queries_for_5_or_40_articles(owner, a, monkeypatch):
    def queries_for_page():
        count = 0
        original = db.obj.execute_sql

        def counting(sql, params=None, *args, **kw):
            nonlocal count
            count += 1
            return original(sql, params, *args, **kw)

        monkeypatch.setattr(db.obj, "execute_sql", counting)
        assert owner.get(PAGE).status_code == 200
        monkeypatch.setattr(db.obj, "execute_sql", original)
        return count

    for n in range(5):
        factories.article(a, title=f"Few {n}")
    few = queries_for_page()
    for n in range(35):
        factories.article(a, title=f"Many {n}")
    assert queries_for_page() == few


def test_another_accounts_articles_never_show(client, personas, a):
    factories.article(a, title="Secret plans")
    outsider = Staff(client, personas.outsider)
    assert "Secret plans" not in outsider.get(PAGE).get_data(as_text=True)


def test_generate_opens_the_progress_panel_and_queues_exactly_those_images(owner, a, parked):
    content, ids = factories.article(a)
    response = owner.post(GENERATE, {"ids": ids})
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    panel = section(html, "progress")
    assert 'hx-trigger="every 1s"' in panel and "/progress" in panel
    assert all(f'data-image-id="{i}"' in panel for i in ids)
    assert "Image generation started" in html and 'hx-swap-oob="beforeend:#toasts"' in html
    # The article's block is refreshed out of band: its images are queued, its button gone.
    block = section(html, f"article-{content.id}")
    assert 'hx-swap-oob="true"' in block and "Generation in progress" in block
    with db.connection_context():
        task = AITaskLog.get()
        assert task.item_ids == ids
        assert {i.status for i in Images.select().where(Images.id.in_(ids))} == {"queued"}
    assert parked.count == 1


def test_generate_without_a_csrf_token_is_refused(owner, a, parked):
    _, ids = factories.article(a)
    response = owner.post(GENERATE, {"ids": ids}, csrf=False)
    assert response.status_code == 403
    assert "CSRF" in response.get_data(as_text=True)
    with db.connection_context():
        assert AITaskLog.select().count() == 0


def test_another_accounts_image_is_a_404_like_a_missing_one(client, personas, a, parked):
    _, ids = factories.article(a)
    with db.connection_context():
        b = factories.account_id("B")
    factories.settings(b)
    outsider = Staff(client, personas.outsider)
    theirs = outsider.post(GENERATE, {"ids": [ids[0]]})
    missing = outsider.post(GENERATE, {"ids": [999999]})
    assert theirs.status_code == missing.status_code == 404
    assert theirs.get_data() == missing.get_data().replace(b"999999", str(ids[0]).encode())
    assert factories.image(ids[0]).status == "pending"


def test_selected_articles_are_generated_in_one_task(owner, a, parked):
    first, first_ids = factories.article(a, title="One")
    second, second_ids = factories.article(a, title="Two")
    factories.article(a, title="Not ticked")
    response = owner.post(GENERATE, {"content_id": [first.id, second.id]})
    assert response.status_code == 200
    with db.connection_context():
        task = AITaskLog.get()
    assert sorted(task.item_ids) == sorted(first_ids + second_ids)


def test_selecting_another_accounts_article_is_a_404(client, personas, a, parked):
    content, _ = factories.article(a)
    with db.connection_context():
        factories.settings(factories.account_id("B"))
    outsider = Staff(client, personas.outsider)
    assert outsider.post(GENERATE, {"content_id": [content.id]}).status_code == 404
    assert outsider.post(GENERATE, {"content_id": [987654]}).status_code == 404


def test_nothing_pending_answers_with_a_toast_and_leaves_the_page(owner, a, parked):
    content, ids = factories.article(a)
    with db.connection_context():
        Images.update(status="generated").where(Images.id.in_(ids)).execute()
    response = owner.post(GENERATE, {"content_id": [content.id]})
    assert response.status_code == 200
    assert (response.headers["HX-Retarget"], response.headers["HX-Reswap"]) == ("#toasts", "beforeend")
    assert "No pending images with prompts found" in response.get_data(as_text=True)


def test_no_active_settings_is_a_readable_refusal(owner, a, parked):
    _, ids = factories.article(a)
    factories.settings(a, is_active=False)
    response = owner.post(GENERATE, {"ids": ids})
    assert response.status_code == 400 and response.headers["HX-Retarget"] == "#toasts"
    html = response.get_data(as_text=True)
    assert 'class="toast toast-error"' in html and "No active image-generation settings" in html


def test_malformed_ids_are_a_400(owner, a):
    assert owner.post(GENERATE, {"ids": ["1; drop"]}).status_code == 400


def test_generate_without_htmx_redirects_to_the_page_with_the_task(owner, a, parked):
    _, ids = factories.article(a)
    response = owner.post(GENERATE, {"ids": ids}, htmx=False)
    assert response.status_code == 302
    with db.connection_context():
        assert f"task={AITaskLog.get().task_id}" in response.headers["Location"]


def test_regenerate_sends_that_one_image_again(owner, a, parked):
    _, ids = factories.article(a)
    with db.connection_context():
        Images.update(status="generated").where(Images.id.in_(ids)).execute()
    assert owner.post(GENERATE, {"ids": [ids[1]]}).status_code == 400  # generated: skipped without regenerate
    assert owner.post(GENERATE, {"ids": [ids[1]], "regenerate": "1"}).status_code == 200
    assert [i.status for i in factories.images(ids)] == ["generated", "queued", "generated"]


def test_a_prompt_is_edited_inline_and_the_block_comes_back(owner, a):
    content, ids = factories.article(a)
    response = owner.post(f"/writer/images/{ids[1]}/prompt", {"prompt": "A heron in the reeds"})
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert html.lstrip().startswith(f'<article class="card article" id="article-{content.id}"')
    assert "A heron in the reeds" in html and "Prompt saved." in html
    assert factories.image(ids[1]).prompt == "A heron in the reeds"


def test_editing_a_prompt_while_it_is_generated_is_refused_inline(owner, a):
    content, ids = factories.article(a)
    running_task(a, ids[:1], ["generating"])
    response = owner.post(f"/writer/images/{ids[0]}/prompt", {"prompt": "Too late"})
    assert response.status_code == 409
    card = section(response.get_data(as_text=True), f"image-{ids[0]}")
    assert "<details open>" in card and "being generated" in card and "Too late" in card
    assert factories.image(ids[0]).prompt == "A lighthouse at dusk"


def test_an_empty_prompt_is_refused_inline(owner, a):
    _, ids = factories.article(a)
    response = owner.post(f"/writer/images/{ids[0]}/prompt", {"prompt": "  "})
    assert response.status_code == 400 and "HX-Retarget" not in response.headers  # swapped where it was asked
    card = section(response.get_data(as_text=True), f"image-{ids[0]}")
    assert "<details open>" in card and 'aria-invalid="true"' in card
    assert "non-empty" in section(card, f"prompt-error-{ids[0]}")


def test_editing_another_accounts_prompt_is_a_404_and_needs_csrf(client, personas, a):
    _, ids = factories.article(a)
    outsider = Staff(client, personas.outsider)
    assert outsider.post(f"/writer/images/{ids[0]}/prompt", {"prompt": "mine"}).status_code == 404
    assert outsider.post("/writer/images/999999/prompt", {"prompt": "mine"}).status_code == 404
    owner = Staff(client, personas.owner)
    assert owner.post(f"/writer/images/{ids[0]}/prompt", {"prompt": "x"}, csrf=False).status_code == 403
    assert factories.image(ids[0]).prompt == "A lighthouse at dusk"


def test_the_article_fragment_is_served_alone_and_only_to_its_account(client, personas, a):
    content, _ = factories.article(a)
    owner = Staff(client, personas.owner)
    fragment = owner.get(f"/writer/images/articles/{content.id}", htmx=True)
    assert fragment.status_code == 200 and "<html" not in fragment.get_data(as_text=True)
    outsider = Staff(client, personas.outsider)
    assert outsider.get(f"/writer/images/articles/{content.id}", htmx=True).status_code == 404


def test_a_reload_reattaches_the_panel_of_the_running_task(owner, a):
    _, ids = factories.article(a)
    task_id = running_task(a, ids)
    panel = section(owner.get(PAGE).get_data(as_text=True), "progress")
    assert f'data-task-id="{task_id}"' in panel and 'hx-trigger="every 1s"' in panel


def test_task_in_the_address_shows_that_tasks_panel_but_never_another_accounts(client, personas, a):
    _, ids = factories.article(a)
    task_id = running_task(a, ids)
    with db.connection_context():
        AITaskLog.update(state="done").where(AITaskLog.task_id == task_id).execute()
    owner = Staff(client, personas.owner)
    assert f'data-task-id="{task_id}"' not in owner.get(PAGE).get_data(as_text=True)
    assert f'data-task-id="{task_id}"' in owner.get(f"{PAGE}?task={task_id}").get_data(as_text=True)
    outsider = Staff(client, personas.outsider)
    assert task_id not in outsider.get(f"{PAGE}?task={task_id}").get_data(as_text=True)


def test_a_bad_template_in_the_database_is_shown_as_the_images_error(owner, a, worker):
    """The readable failure the browser test also uses: an unsafe placeholder written behind the API's back."""
    content, ids = factories.article(a)
    with db.connection_context():
        AIPrompt.create(account=a, prompt_type="image_prompt_template", prompt_value="{post_title.__class__}")
    owner.post(GENERATE, {"ids": ids})
    wait_for(lambda: all(i.status == "failed" for i in factories.images(ids)), message="the images to fail")
    block = section(owner.get(PAGE).get_data(as_text=True), f"article-{content.id}")
    assert "{post_title.__class__}" in block and "Retry failed (3)" in block


# --- the progress panel -------------------------------------------------------------------------

def progress_url(task_id):
    return f"/writer/tasks/{task_id}/progress"


def poll_until_finished(staff, task_id, timeout=60):
    """Poll the fragment as the panel does; return (every fragment seen, the last one)."""
    seen = []

    def finished():
        response = staff.get(progress_url(task_id), htmx=True)
        assert response.status_code == 200
        seen.append(response.get_data(as_text=True))
        return 'hx-trigger="every 1s"' not in section(seen[-1], "progress")

    wait_for(finished, timeout=timeout, interval=0.2, message="the panel to finish")
    return seen, seen[-1]


def test_another_accounts_task_is_a_404_like_a_missing_one(client, personas, a):
    _, ids = factories.article(a)
    task_id = running_task(a, ids)
    outsider = Staff(client, personas.outsider)
    theirs = outsider.get(progress_url(task_id), htmx=True)
    missing = outsider.get(progress_url("0" * 32), htmx=True)
    assert theirs.status_code == missing.status_code == 404
    assert theirs.get_data() == missing.get_data()
    # The answer replaces the polling panel: the error inside it, and no trigger, so polling stops.
    panel = section(theirs.get_data(as_text=True), "progress")
    assert "Task not found." in panel and "hx-trigger" not in panel and "data-close-panel" in panel


@pytest.mark.worker
def test_the_image_being_made_and_those_waiting_for_the_keys_slot_are_told_apart(owner, a, fake_openai, own_queue):
    """Through a real worker: the first image's call is in flight, the others wait in RQ for the key's one
    call at a time."""
    from jobs.tasks import start_task
    from tests.conftest import WorkerProcess

    factories.settings(a, provider="openai", model="gpt-image-2", api_key=fake_openai.api_key,
                       base_url=fake_openai.base_url, max_concurrent_calls=1)
    fake_openai.set_latency(3)
    _, ids = factories.article(a)
    workers = [WorkerProcess(f"page-waiting-{n}") for n in range(3)]  # a worker free for every image
    try:
        with db.connection_context():
            task_id = start_task("generate_images_from_prompts", {"ids": ids}, a)["task_id"]
        wait_for(lambda: fake_openai.call_count == 1, timeout=30, message="the first call")

        def rows():
            html = owner.get(progress_url(task_id), htmx=True).get_data(as_text=True)
            return [section(html, f"row-{task_id[:12]}-{image_id}") for image_id in ids]

        calling, *waiting = wait_for(lambda: (r := rows()) and 'aria-valuenow="3"' not in r[0] and r,
                                     message="the first image's call in the panel")
        assert ">generating<" in calling and "preparing" not in calling
        assert all(">queued<" in row and 'aria-valuenow="0"' in row for row in waiting)
        assert fake_openai.call_count == 1  # the waiting ones hold no call (and no worker)
    finally:
        for worker in workers:
            worker.stop()


def test_a_running_task_polls_itself_and_marks_the_current_step(owner, a):
    _, ids = factories.article(a)
    task_id = running_task(a, ids)
    response = owner.get(progress_url(task_id), htmx=True)
    panel = section(response.get_data(as_text=True), "progress")
    assert f'hx-get="{progress_url(task_id)}"' in panel and 'hx-trigger="every 1s"' in panel
    assert 'hx-swap="outerHTML"' in panel
    current = panel[panel.index('aria-current="step"'):]
    assert current.index("Generating images with AI") < current.index("</li>")
    for label in ("Validating image prompts", "Preparing image generation queue", "Processing image URLs",
                  "Saving image URLs"):
        assert label in panel
    assert "Generating image 1 of 3 with AI" in panel and "the engine's last task message" not in panel
    assert panel.count('role="progressbar"') == 1 + len(ids)
    key = task_id[:12]
    for image_id in ids:
        assert f'id="row-fill-{key}-{image_id}"' in panel  # stable ids: the width animates between polls
    assert "Close" not in panel and 'hx-swap-oob="true"' not in response.get_data(as_text=True)


def test_the_panel_follows_a_real_run_to_the_end_and_refreshes_the_article(owner, a, worker):
    content, ids = factories.article(a)
    started = owner.post(GENERATE, {"ids": ids}).get_data(as_text=True)
    with db.connection_context():
        task_id = AITaskLog.get().task_id
    assert f'data-task-id="{task_id}"' in started
    seen, final = poll_until_finished(owner, task_id)
    panel = section(final, "progress")
    assert "3 images generated successfully" in panel and "hx-trigger" not in panel and "Close" in panel
    assert 'aria-current="step"' not in panel and panel.count("step-done") == 5
    assert panel.count('aria-valuenow="100"') == 1 + len(ids)
    for image_id in ids:
        row = section(panel, f"row-{task_id[:12]}-{image_id}")
        assert 'data-status="generated"' in row and f'src="/media/images/{image_id}.webp' in row
        assert "$0.00" in row
    # The finishing poll carries the article's fresh block and a success toast, once.
    block = section(final, f"article-{content.id}")
    assert 'hx-swap-oob="true"' in block and block.count("badge-generated") >= 3
    assert "toast-success" in final
    assert all("hx-swap-oob" not in f for f in seen[:-1] if 'hx-trigger="every 1s"' in f)
    assert [i.status for i in factories.images(ids)] == ["generated"] * 3


def test_a_failed_image_shows_its_error_and_retry_failed_sends_only_it(owner, a, worker):
    content, ids = factories.article(a)
    with db.connection_context():
        # Longer than the placeholder accepts: a real, readable failure of this image alone.
        Images.update(prompt="x " * 17000).where(Images.id == ids[1]).execute()
    owner.post(GENERATE, {"ids": ids})
    with db.connection_context():
        task_id = AITaskLog.get().task_id
    _, final = poll_until_finished(owner, task_id)
    panel = section(final, "progress")
    assert "2 images generated, 1 failed" in panel and "accepts at most 32000" in panel
    retry = section(panel, "progress-retry")
    assert "Retry failed (1)" in retry
    assert ids_in(panel) == [ids[1]]
    assert "toast-error" in final

    owner.post(f"/writer/images/{ids[1]}/prompt", {"prompt": "Gulls over waves"})
    again = owner.post(GENERATE, {"ids": ids_in(panel)})
    assert again.status_code == 200
    with db.connection_context():
        retry_task = AITaskLog.select().order_by(AITaskLog.id.desc()).first().task_id
    _, final = poll_until_finished(owner, retry_task)
    assert "1 image generated successfully" in final
    assert [i.status for i in factories.images(ids)] == ["generated"] * 3


def test_a_failing_template_fails_every_image_and_retry_after_fixing_it_succeeds(owner, a, worker):
    _, ids = factories.article(a)
    with db.connection_context():
        AIPrompt.create(account=a, prompt_type="image_prompt_template", prompt_value="{image_prompt!r}")
    owner.post(GENERATE, {"ids": ids})
    with db.connection_context():
        task_id = AITaskLog.get().task_id
    _, final = poll_until_finished(owner, task_id)
    assert "0 images generated, 3 failed" in final and "{image_prompt!r}" in final
    with db.connection_context():
        AIPrompt.delete().execute()
    owner.post(GENERATE, {"ids": ids_in(section(final, "progress"))})
    with db.connection_context():
        retry_task = AITaskLog.select().order_by(AITaskLog.id.desc()).first().task_id
    _, final = poll_until_finished(owner, retry_task)
    assert "3 images generated successfully" in final


def test_the_panel_still_shows_every_status_when_redis_is_unreachable(owner, a, monkeypatch):
    import redis

    _, ids = factories.article(a)
    task_id = running_task(a, ids)
    monkeypatch.setattr("webapp.images_page.get_redis", lambda: redis.Redis(host="127.0.0.1", port=1))
    response = owner.get(progress_url(task_id), htmx=True)
    assert response.status_code == 200 and 'data-status="generating"' in response.get_data(as_text=True)


def test_admins_see_each_images_provider_request_id_and_staff_do_not(app, personas, a):
    content, ids = factories.article(a)
    with db.connection_context():
        Images.update(status="failed", error="OpenAI's safety system refused this image.",
                      provider_request_id="req_0123456789abcdef", charge_uncertain=True).where(
            Images.id == ids[0]).execute()
    admin = section(Staff(app.test_client(), personas.admin).get(PAGE).get_data(as_text=True), f"image-{ids[0]}")
    assert "req_0123456789abcdef" in admin and "may have been charged" in admin
    staff = section(Staff(app.test_client(), personas.owner).get(PAGE).get_data(as_text=True), f"image-{ids[0]}")
    assert "req_0123456789abcdef" not in staff and "may have been charged" in staff
