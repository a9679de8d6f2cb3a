"""The Articles pages: the list and its search, New / Edit / Delete, an article's image slots (add, edit,
remove, reorder), suggested prompts, its HTML, the import — as plain forms and as htmx sends them."""

import io
import json
import re

import pytest

from models import AITaskLog, Content, Images, db
from tests import factories
from tests.page_helpers import Staff, park_jobs, running_task, section

LIST = "/writer/articles"
NEW = "/writer/articles/new"
IMPORT = "/writer/articles/import"
BODY = """<p>Kites fly when the wind is steady.</p>
<h2>Choosing a kite</h2><p>A delta kite forgives a beginner. It climbs in light wind.</p>
<h2>Finding a field</h2><p>Open ground, no power lines.</p>
<h2>Launching it</h2><p>Stand with your back to the wind.</p>"""


@pytest.fixture
def a(personas):
    with db.connection_context():
        account = factories.account_id("A")
    factories.settings(account, provider="placeholder", model="placeholder-v1", max_in_article_images=3)
    return account


@pytest.fixture
def owner(client, personas):
    return Staff(client, personas.owner)


@pytest.fixture
def outsider(app, personas):
    with db.connection_context():
        factories.settings(factories.account_id("B"))
    return Staff(app.test_client(), personas.outsider)


@pytest.fixture
def parked(monkeypatch, redis_conn):
    queue = park_jobs(monkeypatch)
    yield queue
    queue.empty()


def page(content_id) -> str:
    return f"/writer/articles/{content_id}"


def text(response) -> str:
    return response.get_data(as_text=True)


def new_article(owner, **fields) -> int:
    form = {"title": "Flying kites", "meta_title": "Flying kites: a guide", "body": BODY, "body_format": "html",
            **fields}
    response = owner.post(NEW, form, htmx=False)
    assert response.status_code == 302, text(response)
    return int(re.search(r"/writer/articles/(\d+)$", response.headers["Location"]).group(1))


def opening_tag(html: str, element_id: str) -> str:
    """The start tag of the element with this id (for void elements such as <input>)."""
    return re.search(rf'<\w+[^>]*\bid="{re.escape(element_id)}"[^>]*>', html).group(0)


def slots_of(content_id) -> list[tuple]:
    with db.connection_context():
        rows = (Images.select().where(Images.content == content_id)
                .order_by(Images.type_rank(), Images.position, Images.id))
        return [(i.image_type, i.position, i.prompt) for i in rows]


def contents() -> list[str]:
    with db.connection_context():
        return [c.title for c in Content.select().order_by(Content.id)]


# --- create, edit, delete -------------------------------------------------------------------------

def test_a_new_article_is_created_from_the_form_and_its_page_shows_it(owner, a):
    content_id = new_article(owner)
    html = text(owner.get(page(content_id)))
    assert "<h1" in html and "Flying kites" in html and "Meta title: Flying kites: a guide" in html
    assert "<h2>Choosing a kite</h2>" in section(html, "article-body")
    with db.connection_context():
        content = Content.get_by_id(content_id)
    assert (content.account_id, content.slug) == (a, "flying-kites")


def test_a_markdown_body_is_stored_as_html(owner, a):
    content_id = new_article(owner, body="Intro **bold**.\n\n## A section\n\nText.", body_format="markdown")
    assert factories.content(content_id).body == "<p>Intro <strong>bold</strong>.</p>\n<h2>A section</h2>\n<p>Text.</p>"


def test_a_blank_title_is_refused_in_the_same_form_keeping_what_was_typed(owner, a):
    response = owner.post(NEW, {"title": "   ", "meta_title": "Kept meta", "body": "<p>Kept body</p>",
                                "body_format": "markdown"}, htmx=False)
    assert response.status_code == 422
    html = text(response)
    form = section(html, "article-form")
    assert 'id="title-error"' in form and "title must be a non-empty string" in form
    assert 'aria-invalid="true"' in opening_tag(form, "title")
    assert 'value="Kept meta"' in form and "&lt;p&gt;Kept body&lt;/p&gt;" in form
    assert re.search(r'value="markdown"[^>]*checked', form)
    assert contents() == []


def test_a_body_format_that_does_not_exist_is_named_beside_its_field(owner, a):
    response = owner.post(NEW, {"title": "Kites", "body": "x", "body_format": "word"}, htmx=False)
    assert response.status_code == 422 and 'id="body_format-error"' in text(response)


def test_edit_saves_the_article_and_a_refusal_keeps_what_was_typed(owner, a):
    content_id = new_article(owner)
    edit = f"{page(content_id)}/edit"
    form = text(owner.get(edit))
    assert 'value="Flying kites"' in form and "&lt;h2&gt;Choosing a kite&lt;/h2&gt;" in form
    refused = owner.post(edit, {"title": "", "meta_title": "New meta", "body": "<p>Typed</p>"}, htmx=False)
    assert refused.status_code == 422 and "title must be a non-empty string" in text(refused)
    assert 'value="New meta"' in text(refused) and factories.content(content_id).meta_title == "Flying kites: a guide"
    saved = owner.post(edit, {"title": "Kites in winter", "meta_title": "", "body": "<p>Cold wind</p>"}, htmx=False)
    assert saved.status_code == 302 and saved.headers["Location"].endswith(page(content_id))
    content = factories.content(content_id)
    assert (content.title, content.meta_title, content.body, content.slug) == \
        ("Kites in winter", "", "<p>Cold wind</p>", "kites-in-winter")


def test_delete_asks_first_then_deletes_the_article_and_its_slots(owner, a):
    content, ids = factories.article(a, title="Old news")
    confirm = owner.get(f"{page(content.id)}/delete")
    assert confirm.status_code == 200
    html = text(confirm)
    assert "Delete “Old news”?" in html and "3 image slots" in html and 'id="confirm-delete"' in html
    assert contents() == ["Old news"]  # asking deletes nothing
    response = owner.post(f"{page(content.id)}/delete", htmx=False)
    assert response.status_code == 302 and response.headers["Location"].endswith(LIST)
    assert contents() == [] and slots_of(content.id) == []
    assert "Deleted “Old news”." in text(owner.get(LIST))


def test_delete_is_refused_with_a_reason_while_its_images_are_generated(owner, a):
    content, ids = factories.article(a, title="Busy")
    running_task(a, ids[:1])
    response = owner.post(f"{page(content.id)}/delete", htmx=False)
    assert response.status_code == 409
    assert "being generated; delete it when they have finished" in section(text(response), "delete-error")
    assert contents() == ["Busy"] and len(slots_of(content.id)) == 3


def test_forms_without_the_csrf_token_are_refused(owner, a):
    content, ids = factories.article(a)
    assert owner.post(NEW, {"title": "No token"}, htmx=False, csrf=False).status_code == 403
    assert owner.post(f"{page(content.id)}/delete", htmx=False, csrf=False).status_code == 403
    assert owner.post(f"/writer/articles/images/{ids[0]}/prompt", {"prompt": "x"}, csrf=False).status_code == 403
    assert contents() == ["A day at the sea"] and factories.image(ids[0]).prompt == "A lighthouse at dusk"


def test_every_form_on_the_pages_carries_the_csrf_token(owner, a):
    content, _ = factories.article(a)
    for url in (NEW, page(content.id), f"{page(content.id)}/edit", f"{page(content.id)}/delete", IMPORT,
                f"{page(content.id)}/suggest"):
        html = text(owner.get(url))
        forms = re.findall(r'<form[^>]*method="post".*?</form>', html, re.S)
        assert forms, url
        assert all('name="csrf_token"' in form for form in forms), url


# --- the list -------------------------------------------------------------------------------------

def test_the_list_links_each_article_with_its_image_counts_and_searches_titles(owner, a):
    kites, ids = factories.article(a, title="Flying kites")
    factories.article(a, title="Growing tomatoes")
    with db.connection_context():
        Images.update(status="generated").where(Images.id == ids[0]).execute()
    html = text(owner.get(LIST))
    assert f'href="/writer/articles/{kites.id}"' in html and 'id="new-article"' in html
    row = section(html, f"row-{kites.id}")
    assert "2 pending" in row and "1 generated" in row
    found = text(owner.get(LIST + "?q=KITES"))
    assert "Flying kites" in found and "Growing tomatoes" not in found
    assert "Growing tomatoes" not in text(owner.get(LIST + "?q=flying+kites"))
    assert "No article has “moon”" in text(owner.get(LIST + "?q=moon"))


def test_the_search_box_gets_the_list_alone(owner, a):
    factories.article(a, title="Flying kites")
    response = owner.client.get(LIST + "?q=kite", headers={"HX-Request": "true", "HX-Trigger": "search"})
    html = text(response)
    assert html.lstrip().startswith('<div id="article-list">') and "<html" not in html and "Flying kites" in html


def test_the_list_comes_twenty_to_a_page(owner, a):
    for n in range(25):
        factories.article(a, title=f"Article {n:02d}", prompts=("p",))
    first = text(owner.get(LIST))
    assert first.count('<tr id="row-') == 20 and "Page 1 of 2" in first and "Article 24" in first
    second = text(owner.get(LIST + "?page=2"))
    assert second.count('<tr id="row-') == 5 and "Article 00" in second
    assert text(owner.get(LIST + "?page=99")).count('<tr id="row-') == 5  # past the end: the last page


def test_home_links_each_article_to_its_page_and_the_nav_lists_articles_before_images(owner, a):
    content, _ = factories.article(a, title="Linked")
    html = text(owner.get("/"))
    assert f'<a href="/writer/articles/{content.id}">Linked</a>' in html
    nav = html[html.index('<nav aria-label="Main">'):html.index("</nav>")]
    assert nav.index(">Articles<") < nav.index(">Images<")


def test_the_images_page_tells_a_new_account_to_add_articles_here(owner, a):
    html = text(owner.get("/writer/images"))
    empty = html[html.index('class="card empty-state"'):]
    assert 'href="/writer/articles/new"' in empty and 'href="/writer/articles/import"' in empty
    assert empty.index("/writer/articles/new") < empty.index("curl")  # the API is the second way, folded away


def test_the_images_page_offers_select_all_in_the_bulk_form(owner, a):
    factories.article(a)
    bulk = section(text(owner.get("/writer/images")), "bulk")
    assert 'id="select-all"' in bulk and "Select all on this page" in bulk
    assert "data-select-all hidden" in bulk  # shown by app.js: without script it could do nothing


# --- image slots ----------------------------------------------------------------------------------

def test_slots_show_type_size_status_prompt_and_a_thumbnail_when_generated(owner, a):
    factories.settings(a, sizes={"featured": "1536x1024", "in_article": "1024x1024"})
    content, ids = factories.article(a)
    with db.connection_context():
        Images.update(status="generated", image_url=f"/media/images/{ids[0]}.webp?v=1", image_format="webp",
                      generated_prompt="A lighthouse at dusk").where(Images.id == ids[0]).execute()
    html = text(owner.get(page(content.id)))
    featured = section(html, f"slot-{ids[0]}")
    assert "Featured image" in featured and "1536x1024" in featured and "badge-generated" in featured
    assert f'src="/media/images/{ids[0]}.webp?v=1"' in featured and "out of date" not in featured
    second = section(html, f"slot-{ids[1]}")
    assert "In-article image 1" in second and "1024x1024" in second and "Gulls over waves" in second
    assert "badge-pending" in second and "<img" not in second
    assert f'name="content_id" value="{content.id}"' in section(html, "slots")
    assert "Generate Images (2)" in section(html, "slots")


def test_a_slot_is_added_and_the_writer_refusals_come_back_in_the_form(owner, a):
    content_id = new_article(owner)
    add = f"{page(content_id)}/images"
    response = owner.post(add, {"image_type": "featured", "prompt": "A kite on a beach"})
    assert response.status_code == 200
    html = text(response)
    assert html.lstrip().startswith('<section id="slots"') and "Added the featured image." in html
    assert 'id="article-html" class="card export" aria-labelledby="html-title" hx-swap-oob="true"' in html
    assert owner.post(add, {"image_type": "in_article", "prompt": "One"}).status_code == 200
    assert owner.post(add, {"image_type": "in_article", "position": "3", "prompt": "Three"}).status_code == 200
    again = owner.post(add, {"image_type": "featured", "prompt": "Another featured"})
    assert again.status_code == 409
    form = section(text(again), "add-image-form")
    assert "already has a featured image" in form and "Another featured" in form
    beyond = owner.post(add, {"image_type": "in_article", "position": "4", "prompt": "Four"})
    assert beyond.status_code == 422 and "from 1 to 3" in section(text(beyond), "add-error")
    assert slots_of(content_id) == [("featured", 0, "A kite on a beach"), ("in_article", 1, "One"),
                                    ("in_article", 3, "Three")]
    assert owner.post(add, {"image_type": "in_article", "prompt": "Two"}).status_code == 200  # the free one
    assert ("in_article", 2, "Two") in slots_of(content_id)
    assert 'id="slots-full"' in text(owner.get(page(content_id)))  # featured and 3 of 3: nothing left to add


def test_desktop_and_mobile_slots_are_offered_only_when_the_settings_turn_them_on(owner, a):
    content_id = new_article(owner)
    form = section(text(owner.get(page(content_id))), "add-type")
    assert 'value="featured"' in form and 'value="in_article"' in form and 'value="desktop"' not in form
    factories.settings(a, desktop_enabled=True, mobile_enabled=True)
    form = section(text(owner.get(page(content_id))), "add-type")
    assert 'value="desktop"' in form and 'value="mobile"' in form


def test_a_plain_form_add_redirects_back_and_a_refusal_renders_the_whole_page(owner, a):
    content_id = new_article(owner)
    added = owner.post(f"{page(content_id)}/images", {"image_type": "featured", "prompt": "A kite"}, htmx=False)
    assert added.status_code == 302 and added.headers["Location"].endswith(f"{page(content_id)}#slots")
    refused = owner.post(f"{page(content_id)}/images", {"image_type": "poster", "prompt": "x"}, htmx=False)
    assert refused.status_code == 422
    assert "<html" in text(refused) and "image_type must be one of" in section(text(refused), "add-error")


def test_a_prompt_is_edited_inline_and_refused_inline_while_generating(owner, a):
    content, ids = factories.article(a)
    url = f"/writer/articles/images/{ids[1]}/prompt"
    response = owner.post(url, {"prompt": "A heron in the reeds"})
    assert response.status_code == 200 and "Prompt saved." in text(response)
    assert "A heron in the reeds" in section(text(response), f"slot-{ids[1]}")
    assert factories.image(ids[1]).prompt == "A heron in the reeds"
    assert factories.image(ids[1]).alt_text == "A heron in the reeds"  # the default alt text follows the prompt
    blank = owner.post(url, {"prompt": "  "})
    assert blank.status_code == 422 and "non-empty" in section(text(blank), f"slot-prompt-error-{ids[1]}")
    running_task(a, [ids[1]])
    busy = owner.post(url, {"prompt": "Changed meanwhile"})
    assert busy.status_code == 409
    slot = section(text(busy), f"slot-{ids[1]}")
    assert "being generated" in slot and "Changed meanwhile" in slot and "<details open>" in slot
    assert factories.image(ids[1]).prompt == "A heron in the reeds"


def test_alt_text_title_and_caption_are_edited_inline_and_out_of_date_is_shown(owner, a):
    content, ids = factories.article(a)
    with db.connection_context():
        Images.update(status="generated", generated_prompt="An older prompt").where(Images.id == ids[0]).execute()
    html = text(owner.get(page(content.id)))
    assert f'id="out-of-date-{ids[0]}"' in section(html, f"slot-{ids[0]}")
    url = f"/writer/articles/images/{ids[0]}/publishing"
    response = owner.post(url, {"alt_text": "A white lighthouse", "title": "Lighthouse", "caption": "At dusk"})
    assert response.status_code == 200 and "Alt text, title and caption saved." in text(response)
    image = factories.image(ids[0])
    assert (image.alt_text, image.alt_text_edited, image.title, image.caption) == \
        ("A white lighthouse", True, "Lighthouse", "At dusk")
    assert 'id="article-html"' in text(response)  # the article's HTML follows, out of band
    long = owner.post(url, {"alt_text": "x" * 126})
    assert long.status_code == 422 and "at most 125" in section(text(long), f"publishing-error-{ids[0]}")
    emptied = owner.post(url, {"alt_text": ""})
    assert emptied.status_code == 200 and factories.image(ids[0]).alt_text == "A lighthouse at dusk"


def test_in_article_slots_move_up_and_down_and_the_writer_swaps_them(owner, a):
    content, ids = factories.article(a, prompts=("Featured", "First", "Second", "Third"))
    html = section(text(owner.get(page(content.id))), "slots")
    assert f'id="move-up-{ids[1]}"' not in html and f'id="move-down-{ids[3]}"' not in html  # 1 is top, 3 the max
    response = owner.post(f"/writer/articles/images/{ids[3]}/position", {"position": "2"})
    assert response.status_code == 200 and "Moved to in-article position 2." in text(response)
    assert slots_of(content.id) == [("featured", 0, "Featured"), ("in_article", 1, "First"),
                                    ("in_article", 2, "Third"), ("in_article", 3, "Second")]
    order = re.findall(r'id="slot-(\d+)"', text(response))
    assert [int(i) for i in order] == [ids[0], ids[1], ids[3], ids[2]]
    assert owner.post(f"/writer/articles/images/{ids[1]}/position", {"position": "9"}).status_code == 422
    assert owner.post(f"/writer/articles/images/{ids[0]}/position", {"position": "1"}).status_code == 422
    plain = owner.post(f"/writer/articles/images/{ids[1]}/position", {"position": "2"}, htmx=False)
    assert plain.status_code == 302 and [p for _, p, _ in slots_of(content.id)] == [0, 1, 2, 3]
    assert slots_of(content.id)[1][2] == "Third"


def test_a_slot_is_removed_but_not_while_it_is_generated(owner, a):
    content, ids = factories.article(a)
    response = owner.post(f"/writer/articles/images/{ids[2]}/delete")
    assert response.status_code == 200 and "Removed the in-article image 2." in text(response)
    assert f'id="slot-{ids[2]}"' not in text(response) and len(slots_of(content.id)) == 2
    running_task(a, [ids[1]])
    busy = owner.post(f"/writer/articles/images/{ids[1]}/delete")
    assert busy.status_code == 409 and "being generated" in section(text(busy), "slots-error")
    assert len(slots_of(content.id)) == 2


def test_generate_from_the_article_page_uses_the_images_generate_route_and_shows_the_panel(owner, a, parked):
    content, ids = factories.article(a)
    html = text(owner.get(page(content.id)))
    assert '<div id="progress"></div>' in html
    stand_in = section(html, f"article-{content.id}")
    assert "data-refresh-instead" in stand_in and f'hx-get="/writer/articles/{content.id}/slots"' in stand_in
    response = owner.post("/writer/images/generate", {"content_id": content.id})
    assert response.status_code == 200 and 'hx-trigger="every 1s"' in section(text(response), "progress")
    with db.connection_context():
        task_id = AITaskLog.get().task_id
    # A reload finds the running task's panel again, and the slots say what is going on.
    again = text(owner.get(page(content.id)))
    assert f'data-task-id="{task_id}"' in section(again, "progress")
    assert "Generation in progress" in section(again, "slots") and "badge-queued" in section(again, "slots")
    fragment = text(owner.get(f"{page(content.id)}/slots", htmx=True))
    assert fragment.lstrip().startswith('<section id="slots"') and 'hx-swap-oob="true"' in fragment
    other, _ = factories.article(a, title="Another")
    assert 'data-task-id' not in section(text(owner.get(page(other.id))), "progress")  # not its task


# --- suggested prompts ----------------------------------------------------------------------------

def test_prompts_are_suggested_from_the_title_first_paragraph_and_each_h2_section(owner, a):
    long = "word " * 120
    content_id = new_article(owner, body=BODY.replace("Open ground, no power lines.", f"Open ground. {long}"))
    html = text(owner.get(f"{page(content_id)}/suggest"))
    assert "Flying kites: Kites fly when the wind is steady." in section(html, "prompt_featured")
    assert "Choosing a kite: A delta kite forgives a beginner. It climbs in light wind." in \
        section(html, "prompt_in_article_1")
    second = re.search(r'<textarea id="prompt_in_article_2"[^>]*>(.*?)</textarea>', html, re.S).group(1)
    assert second.startswith("Finding a field: Open ground. word") and len(second) <= 300
    assert "Launching it: Stand with your back to the wind." in section(html, "prompt_in_article_3")
    assert slots_of(content_id) == []  # suggesting saves nothing


def test_saving_suggestions_adds_the_missing_slots_as_edited_and_never_overwrites_one(owner, a):
    content_id = new_article(owner)
    owner.post(f"{page(content_id)}/images", {"image_type": "in_article", "position": "2", "prompt": "Mine"})
    html = text(owner.get(f"{page(content_id)}/suggest", htmx=True))
    assert html.lstrip().startswith('<section id="suggest"')
    assert 'name="prompt_in_article_2"' not in html and "Kept: the article has this slot already (Mine)" in html
    response = owner.post(f"{page(content_id)}/suggest", {
        "prompt_featured": "A kite high over a meadow", "prompt_in_article_1": "",  # emptied: left out
        "prompt_in_article_2": "Forged overwrite", "prompt_in_article_3": "Launching it: back to the wind"})
    assert response.status_code == 200
    answer = text(response)
    assert answer.startswith('<div id="suggest"></div>') and "Added 2 image prompts. Kept 1 existing." in answer
    assert 'id="slots" class="card slots" aria-labelledby="slots-title" hx-swap-oob="true"' in answer
    assert slots_of(content_id) == [("featured", 0, "A kite high over a meadow"), ("in_article", 2, "Mine"),
                                    ("in_article", 3, "Launching it: back to the wind")]


def test_a_refused_suggestion_comes_back_in_its_form_and_adds_nothing(owner, a):
    content_id = new_article(owner)
    response = owner.post(f"{page(content_id)}/suggest", {"prompt_featured": "Fine",
                                                          "prompt_in_article_1": "x" * 8001}, htmx=False)
    assert response.status_code == 422
    assert "at most 8000" in section(text(response), "suggest-error")
    assert "Fine" in section(text(response), "prompt_featured") and slots_of(content_id) == []


def test_a_body_without_sections_suggests_the_featured_prompt_only(owner, a):
    content_id = new_article(owner, body="<p>Only an intro.</p>")
    html = text(owner.get(f"{page(content_id)}/suggest"))
    assert "Flying kites: Only an intro." in html and "prompt_in_article_1" not in html
    assert "no <code>&lt;h2&gt;</code> sections" in html


# --- the article's HTML ---------------------------------------------------------------------------

def generated(content_id, image_id, n):
    with db.connection_context():
        Images.update(status="generated", image_format="webp", width=1536, height=1024,
                      file_path=f"acct/images/{n}.webp", public_key=f"{n:032x}").where(Images.id == image_id).execute()


def test_the_article_html_is_shown_to_copy_and_downloads_as_a_file(owner, a):
    content_id = new_article(owner)
    for kind, position, prompt in (("featured", "", "A kite"), ("in_article", "2", "A field. Wide")):
        owner.post(f"{page(content_id)}/images", {"image_type": kind, "position": position, "prompt": prompt})
    with db.connection_context():
        ids = [i.id for i in Images.select().where(Images.content == content_id).order_by(Images.position)]
    for n, image_id in enumerate(ids, start=1):
        generated(content_id, image_id, n)
    html = text(owner.get(page(content_id)))
    export = section(html, "article-html")
    assert 'data-copy="#article-html-text"' in export and "readonly" in export
    copied = re.search(r"<textarea id=\"article-html-text\"[^>]*>\n(.*?)</textarea>", export, re.S).group(1)
    first, second = (f"/p/{n:032x}.webp" for n in (1, 2))
    assert copied.index(first) < copied.index("&lt;p&gt;Kites fly")
    assert copied.index("Finding a field&lt;/h2&gt;") < copied.index(second) < copied.index("Open ground")
    assert 'alt="A field."' in copied.replace("&#34;", '"').replace("&quot;", '"')
    assert f'href="/v1/writer/content/{content_id}/export.zip"' in export
    download = owner.get(f"{page(content_id)}/article.html")
    assert download.status_code == 200 and download.headers["Content-Disposition"] == \
        'attachment; filename="flying-kites.html"'
    assert f'<img src="http://localhost{second}" alt="A field."' in text(download)


def test_the_zip_link_works_with_the_pages_session(owner, a):
    content_id = new_article(owner)
    response = owner.get(f"/v1/writer/content/{content_id}/export.zip")
    assert response.status_code == 200 and response.mimetype == "application/zip"


# --- import ---------------------------------------------------------------------------------------

def upload(owner, name: str, data: str):
    return owner.post(IMPORT, {"file": (io.BytesIO(data.encode()), name)}, htmx=False,
                      content_type="multipart/form-data")


def carried(html: str) -> str:
    import html as html_lib

    return html_lib.unescape(re.search(r'name="articles" value="([^"]*)"', html).group(1))


def test_a_json_import_is_previewed_then_created_in_one_go(owner, a):
    body = {"articles": [
        {"title": "Kites", "body": "<p>Hi</p><script>x()</script>",
         "images": [{"image_type": "featured", "prompt": "A kite"}, {"image_type": "in_article", "prompt": "Wind"}]},
        {"title": "Tomatoes", "meta_title": "Growing tomatoes"}]}
    preview = upload(owner, "articles.json", json.dumps(body))
    assert preview.status_code == 200
    html = text(preview)
    assert "articles.json: 2 articles to create" in html and "2 (1 featured, 1 in-article)" in html
    assert 'id="create-imported"' in html and contents() == []  # a preview creates nothing
    created = owner.post("/writer/articles/import/create", {"articles": carried(html)}, htmx=False)
    assert created.status_code == 302 and created.headers["Location"].endswith(LIST)
    assert contents() == ["Kites", "Tomatoes"]
    with db.connection_context():
        kites = Content.get(Content.title == "Kites")
    assert kites.body == "<p>Hi</p>" and [s[:2] for s in slots_of(kites.id)] == [("featured", 0), ("in_article", 1)]
    assert "Created 2 articles." in text(owner.get(LIST))


def test_a_csv_import_is_previewed_then_created(owner, a):
    csv = ("title,meta_title,image_type,position,prompt\n"
           "Kites,,featured,0,A kite\nKites,,in_article,1,Wind\nKites,,in_article,2,Sand\nTomatoes,,,,\n")
    html = text(upload(owner, "articles.csv", csv))
    assert "2 articles to create" in html and "3 (1 featured, 2 in-article)" in html
    assert owner.post("/writer/articles/import/create", {"articles": carried(html)}, htmx=False).status_code == 302
    assert contents() == ["Kites", "Tomatoes"]


def test_a_bad_csv_row_is_named_by_its_line_and_nothing_is_created(owner, a):
    csv = "title,meta_title,image_type,position,prompt\nKites,,featured,0,A kite\nKites,,poster,1,Wind\n"
    response = upload(owner, "articles.csv", csv)
    assert response.status_code == 422
    error = section(text(response), "import-error")
    assert "line 3: image_type must be one of" in error and "Nothing was created." in error
    assert 'id="create-imported"' not in text(response) and contents() == []
    # The account's own limit (3 in-article images) is checked before the preview, too.
    beyond = upload(owner, "articles.csv", "Kites,,in_article,4,Too far\n")
    assert beyond.status_code == 422 and "line 1: position must be a whole number from 1 to 3" in text(beyond)


def test_create_checks_everything_again_and_creates_nothing_when_one_article_is_bad(owner, a):
    articles = [{"title": "Good"}, {"title": "Bad", "images": [{"image_type": "featured", "position": 3}]}]
    response = owner.post("/writer/articles/import/create", {"articles": json.dumps(articles)}, htmx=False)
    assert response.status_code == 422 and "articles[1].images[0].position" in section(text(response), "import-error")
    assert contents() == []
    lined = [{"title": "Kites", "images": [{"image_type": "mural", "_line": 7}], "_line": 7}]
    response = owner.post("/writer/articles/import/create", {"articles": json.dumps(lined)}, htmx=False)
    assert response.status_code == 422 and "line 7: image_type" in text(response) and contents() == []
    assert owner.post("/writer/articles/import/create", {"articles": "{not json"}, htmx=False).status_code == 422


def test_files_that_are_not_json_or_text_are_refused_readably(owner, a):
    assert "not valid JSON" in text(upload(owner, "a.json", '{"articles": ['))
    refused = owner.post(IMPORT, {"file": (io.BytesIO(b"\xff\xfe\x00bad"), "a.csv")}, htmx=False,
                         content_type="multipart/form-data")
    assert refused.status_code == 422 and "UTF-8" in text(refused)
    assert "Choose a JSON or CSV file." in text(owner.post(IMPORT, {}, htmx=False))


# --- accounts and hostile bodies ------------------------------------------------------------------

def test_another_accounts_article_and_slots_are_a_404_like_missing_ones(owner, outsider, a):
    content, ids = factories.article(a, title="Secret plans")
    gets = [page(content.id), f"{page(content.id)}/edit", f"{page(content.id)}/delete", f"{page(content.id)}/suggest",
            f"{page(content.id)}/slots", f"{page(content.id)}/article.html"]
    for url in gets:
        theirs, missing = outsider.get(url), outsider.get(url.replace(str(content.id), "987654"))
        assert theirs.status_code == missing.status_code == 404, url
        assert "Secret plans" not in text(theirs)
    posts = [(f"{page(content.id)}/edit", {"title": "Taken"}), (f"{page(content.id)}/delete", {}),
             (f"{page(content.id)}/images", {"image_type": "desktop"}),
             (f"{page(content.id)}/suggest", {"prompt_featured": "x"}),
             (f"/writer/articles/images/{ids[0]}/prompt", {"prompt": "Taken"}),
             (f"/writer/articles/images/{ids[0]}/publishing", {"alt_text": "Taken"}),
             (f"/writer/articles/images/{ids[1]}/position", {"position": "2"}),
             (f"/writer/articles/images/{ids[2]}/delete", {})]
    for url, form in posts:
        assert outsider.post(url, form, htmx=False).status_code == 404, url
        assert outsider.post(url, form).status_code == 404, url
    for url in (LIST, LIST + "?q=Secret", "/"):
        assert "Secret plans" not in text(outsider.get(url)), url
    assert contents() == ["Secret plans"] and len(slots_of(content.id)) == 3
    assert [i.prompt for i in factories.images(ids)] == ["A lighthouse at dusk", "Gulls over waves",
                                                          "A sandy path through dunes"]


HOSTILE = ('<p>Hello <a href="javascript:alert(1)">click</a></p><script>alert(2)</script>'
           '<img src="https://example.test/x.png" onerror="alert(3)"><iframe src="https://evil.test/"></iframe>'
           '<h2 onclick="alert(4)">Section</h2><p style="color:red">Fine</p>')


def test_a_hostile_body_is_shown_sanitized_on_the_page(owner, a):
    content_id = new_article(owner, title="<script>alert(5)</script>Hostile", body=HOSTILE)
    html = text(owner.get(page(content_id)))
    body = section(html, "article-body")
    assert "Hello" in body and "<h2>Section</h2>" in body and "Fine" in body
    for bad in ("<script", "javascript:", "onerror", "onclick", "<iframe", "evil.test", "style=", "alert(2)"):
        assert bad not in body, bad
    assert "<script>alert(5)" not in html and "&lt;script&gt;alert(5)&lt;/script&gt;Hostile" in html
    export = section(html, "article-html")
    assert "&lt;script" not in export and "javascript:" not in export
    assert "script-src 'self'" in owner.get(page(content_id)).headers["Content-Security-Policy"]
