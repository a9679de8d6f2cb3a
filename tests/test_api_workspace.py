"""The articles workspace API: list, edit and delete articles, add, edit, reorder and delete images,
and generate an article's pending images (../shared/api.md, "Articles (workspace)")."""

import pytest

from models import AITaskLog, Content, Images, db
from tests import factories
from tests.api_helpers import GENERATE, ApiClient

CONTENT = "/v1/writer/content/"
MISSING = 999999


@pytest.fixture
def api(client, personas):
    return ApiClient(client, personas.owner)


@pytest.fixture
def outsider(app, personas):
    return ApiClient(app.test_client(), personas.outsider)


def delete(api, url):
    return api.client.delete(url, headers=api.headers)


def send(api, method, url, body=None):
    if method == "delete":
        return delete(api, url)
    return getattr(api, method)(url, **({"json": body} if body is not None else {}))


def create(api, **fields):
    body = {"title": "Tea at dusk", "images": [
        {"image_type": "featured", "position": 0, "prompt": "A teapot on a table. Warm light, film grain."},
        {"image_type": "in_article", "position": 1, "prompt": "Tea leaves"},
        {"image_type": "in_article", "position": 2, "prompt": "A cup"},
    ], **fields}
    response = api.post(CONTENT, json=body)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def set_status(image_id, status, **fields):
    with db.connection_context():
        Images.update(status=status, **fields).where(Images.id == image_id).execute()


def stored(image_id) -> Images:
    return factories.image(image_id)


# --- articles -------------------------------------------------------------------------------------

def test_a_created_article_answers_with_its_body_and_dates(api):
    created = create(api, body="<p>Hello <b>tea</b></p>")
    assert created["body"] == "<p>Hello <b>tea</b></p>"
    assert created["created_at"].endswith("Z") and created["updated_at"].endswith("Z")
    image = created["images"][0]
    for key in ("alt_text", "title", "caption", "file_name", "out_of_date", "public_url"):
        assert key in image
    assert image["out_of_date"] is False and image["file_name"] is None


@pytest.mark.parametrize("body_format", ["html", "markdown"])
def test_hostile_bodies_are_stored_and_returned_sanitized(api, body_format):
    hostile = ('<p>Fine</p><script>alert(1)</script><img src="https://cdn.example/x.png" onerror="alert(2)">'
               '<a href="javascript:alert(3)">click</a><iframe src="https://evil.example/"></iframe>'
               '<img src="data:image/png;base64,AAAA"><svg onload="alert(4)"></svg>')
    created = create(api, body=hostile, body_format=body_format)
    for body in (created["body"], api.get(f"{CONTENT}{created['id']}/").get_json()["body"],
                 factories.content(created["id"]).body):
        for needle in ("<script", "alert", "onerror", "javascript:", "<iframe", "data:", "<svg", "onload"):
            assert needle not in body, (needle, body)
        assert "Fine" in body and '<img src="https://cdn.example/x.png">' in body
    edited = api.patch(f"{CONTENT}{created['id']}/", json={"body": hostile, "body_format": body_format}).get_json()
    assert "<script" not in edited["body"] and "onerror" not in edited["body"]


def test_markdown_bodies_are_converted_to_html(api):
    created = create(api, body="## Brewing\n\nUse **fresh** water.\n\n- one\n- two\n", body_format="markdown")
    assert created["body"] == "<h2>Brewing</h2>\n<p>Use <strong>fresh</strong> water.</p>\n<ul>\n<li>one</li>\n" \
                              "<li>two</li>\n</ul>"


@pytest.mark.parametrize("fields, needle", [
    ({"body": "x" * 500_001}, "at most 500,000"),
    ({"body": 12}, "body must be a string"),
    ({"body": "x", "body_format": "rst"}, "body_format must be one of: html, markdown"),
])
def test_a_bad_body_is_a_400_that_says_why(api, fields, needle):
    response = api.post(CONTENT, json={"title": "T", **fields})
    assert response.status_code == 400 and needle in response.get_json()["error"]


def test_the_slug_comes_from_the_title_and_follows_it(api):
    created = create(api, title="  Café & Crème: The 10 Best Teas, Don't Miss Them! " + "long " * 20)
    slug = factories.content(created["id"]).slug
    assert slug.startswith("cafe-creme-the-10-best-teas-dont-miss-them-long") and len(slug) <= 60
    assert not slug.endswith("-") and slug.split("-")[-1] == "long"
    api.patch(f"{CONTENT}{created['id']}/", json={"title": "Green tea"})
    assert factories.content(created["id"]).slug == "green-tea"
    nothing_ascii = create(api, title="日本の茶")
    assert factories.content(nothing_ascii["id"]).slug == f"article-{nothing_ascii['id']}"


def test_edit_an_article(api):
    created = create(api, body="<p>old</p>")
    response = api.patch(f"{CONTENT}{created['id']}/", json={"title": "New", "meta_title": "Meta",
                                                             "body": "# New body", "body_format": "markdown"})
    assert response.status_code == 200
    edited = response.get_json()
    assert (edited["title"], edited["meta_title"], edited["body"]) == ("New", "Meta", "<h1>New body</h1>")
    assert len(edited["images"]) == 3 and edited["updated_at"] >= created["updated_at"]
    assert api.get(f"{CONTENT}{created['id']}/").get_json()["title"] == "New"


@pytest.mark.parametrize("fields, needle", [
    ({}, "Nothing to change"),
    ({"title": ""}, "title must be a non-empty string"),
    ({"title": 5}, "title"),
    ({"slug": "x"}, "Unknown field 'slug'"),
    ({"meta_title": "m" * 501}, "at most 500"),
])
def test_a_bad_article_edit_is_a_400_and_changes_nothing(api, fields, needle):
    created = create(api)
    response = api.patch(f"{CONTENT}{created['id']}/", json=fields)
    assert response.status_code == 400 and needle in response.get_json()["error"]
    assert factories.content(created["id"]).title == "Tea at dusk"


def test_delete_an_article_and_its_images(api):
    created = create(api)
    assert delete(api, f"{CONTENT}{created['id']}/").status_code == 204
    assert api.get(f"{CONTENT}{created['id']}/").status_code == 404
    with db.connection_context():
        assert Images.select().where(Images.content == created["id"]).count() == 0
    assert delete(api, f"{CONTENT}{created['id']}/").status_code == 404


@pytest.mark.parametrize("status", ["queued", "generating"])
def test_an_article_is_not_deleted_while_an_image_is_being_generated(api, status):
    created = create(api)
    set_status(created["images"][1]["id"], status)
    response = delete(api, f"{CONTENT}{created['id']}/")
    assert response.status_code == 409 and response.get_json()["type"] == "Conflict"
    assert "being generated" in response.get_json()["error"]
    assert len(api.get(f"{CONTENT}{created['id']}/").get_json()["images"]) == 3  # nothing went
    set_status(created["images"][1]["id"], "generated")
    assert delete(api, f"{CONTENT}{created['id']}/").status_code == 204


# --- the list -------------------------------------------------------------------------------------

def test_the_list_searches_titles_and_pages_with_next_links(api, outsider):
    made = [create(api, title=f"Green tea {n:02d}")["id"] for n in range(5)]
    create(api, title="Coffee")
    create(outsider, title="Green tea of theirs")
    first = api.get(f"{CONTENT}?q=GREEN+tea&per_page=2").get_json()
    assert (first["count"], first["page"], first["per_page"]) == (5, 1, 2)
    assert [c["id"] for c in first["results"]] == made[::-1][:2]  # newest first
    assert set(first["results"][0]) >= {"id", "title", "meta_title", "body", "images", "created_at", "updated_at"}
    assert [len(c["images"]) for c in first["results"]] == [3, 3]
    assert first["next"].startswith("http://localhost/v1/writer/content/?")
    seen, page = [], first
    while True:
        seen += [c["id"] for c in page["results"]]
        if page["next"] is None:
            break
        page = api.get(page["next"]).get_json()
    assert seen == made[::-1] and page["page"] == 3
    everything = api.get(CONTENT).get_json()
    assert everything["count"] == 6 and everything["per_page"] == 20 and everything["next"] is None
    assert api.get(f"{CONTENT}?q=50%25").get_json()["count"] == 0  # % is a character, not a wildcard
    beyond = api.get(f"{CONTENT}?page=9").get_json()
    assert beyond["results"] == [] and beyond["next"] is None


@pytest.mark.parametrize("query", ["per_page=0", "per_page=101", "per_page=x", "page=0", "page=-1", "page=²"])
def test_odd_paging_is_a_400(api, query):
    response = api.get(f"{CONTENT}?{query}")
    assert response.status_code == 400 and response.get_json()["type"] == "ValidationError"


def test_the_image_list_pages_instead_of_stopping_silently(api):
    for n in range(3):
        create(api, title=f"Article {n}")
    first = api.get("/v1/writer/images/?status=pending&per_page=4").get_json()
    assert first["count"] == 9 and len(first["results"]) == 4
    assert "status=pending" in first["next"] and "page=2" in first["next"]
    rest = api.get(first["next"]).get_json()
    last = api.get(rest["next"]).get_json()
    ids = [i["id"] for page in (first, rest, last) for i in page["results"]]
    assert len(set(ids)) == 9 and last["next"] is None


# --- images ---------------------------------------------------------------------------------------

def test_add_images_within_the_rules(api):
    created = api.post(CONTENT, json={"title": "Empty"}).get_json()
    url = f"{CONTENT}{created['id']}/images/"
    featured = api.post(url, json={"image_type": "featured", "prompt": "A kite"})
    assert featured.status_code == 201 and featured.get_json()["position"] == 0
    assert featured.get_json()["alt_text"] == "A kite" and featured.get_json()["status"] == "pending"
    again = api.post(url, json={"image_type": "featured", "prompt": "Another"})
    assert again.status_code == 409 and "already has a featured image" in again.get_json()["error"]
    assert api.post(url, json={"image_type": "in_article", "position": 2, "prompt": "b"}).status_code == 201
    first_free = api.post(url, json={"image_type": "in_article", "prompt": "a"}).get_json()
    assert first_free["position"] == 1
    taken = api.post(url, json={"image_type": "in_article", "position": 2, "prompt": "c"})
    assert taken.status_code == 409 and "position 2 is taken" in taken.get_json()["error"]
    beyond = api.post(url, json={"image_type": "in_article", "position": 4, "prompt": "d"})
    assert beyond.status_code == 400 and "from 1 to 3" in beyond.get_json()["error"]
    assert api.post(url, json={"image_type": "in_article", "prompt": "e"}).get_json()["position"] == 3
    full = api.post(url, json={"image_type": "in_article", "prompt": "f"})
    assert full.status_code == 409 and "3 in-article images" in full.get_json()["error"]
    for kind in ("desktop", "mobile"):
        assert api.post(url, json={"image_type": kind, "prompt": kind}).status_code == 201
        assert api.post(url, json={"image_type": kind, "prompt": kind}).status_code == 409
    assert len(api.get(f"{CONTENT}{created['id']}/").get_json()["images"]) == 6


def test_the_in_article_limit_follows_the_settings(api):
    with db.connection_context():
        factories.settings(factories.account_id("A"), provider="placeholder", max_in_article_images=5)
    created = api.post(CONTENT, json={"title": "Five"}).get_json()
    added = api.post(f"{CONTENT}{created['id']}/images/", json={"image_type": "in_article", "position": 5})
    assert added.status_code == 201


@pytest.mark.parametrize("body, needle", [
    ({"image_type": "banner"}, "image_type must be one of"),
    ({"image_type": "featured", "position": 2}, "must be 0 for a featured image"),
    ({"image_type": "in_article", "position": 0}, "from 1 to 3"),
    ({"image_type": "in_article", "position": True}, "position"),
    ({"image_type": "featured", "prompt": 5}, "prompt must be a string"),
    ({"image_type": "featured", "alt_text": "a" * 126}, "at most 125"),
])
def test_a_bad_image_is_a_400(api, body, needle):
    created = api.post(CONTENT, json={"title": "T"}).get_json()
    response = api.post(f"{CONTENT}{created['id']}/images/", json=body)
    assert response.status_code == 400 and needle in response.get_json()["error"], response.get_json()


def test_create_applies_the_same_rules(api):
    two_featured = api.post(CONTENT, json={"title": "T", "images": [{"image_type": "featured", "prompt": "a"},
                                                                    {"image_type": "featured", "prompt": "b"}]})
    assert two_featured.status_code == 400
    assert "images[1] and images[0] share the same slot" in two_featured.get_json()["error"]
    beyond = api.post(CONTENT, json={"title": "T", "images": [{"image_type": "in_article", "position": 4}]})
    assert beyond.status_code == 400 and "images[0].position" in beyond.get_json()["error"]


def test_the_default_alt_text_is_the_prompts_first_sentence(api):
    long_prompt = ("A very long description of a harbour at dawn with many fishing boats, gulls, nets and "
                   "ropes, and a lighthouse far away on the cliffs. Second sentence.")
    created = api.post(CONTENT, json={"title": "T", "images": [
        {"image_type": "featured", "prompt": "A teapot on a table. Warm light, film grain."},
        {"image_type": "in_article", "position": 1, "prompt": long_prompt},
        {"image_type": "in_article", "position": 2, "prompt": ""},
    ]}).get_json()
    alts = [i["alt_text"] for i in created["images"]]
    assert alts[0] == "A teapot on a table."
    assert len(alts[1]) <= 125 and long_prompt.startswith(alts[1]) and long_prompt[len(alts[1])] == " "
    assert alts[2] == ""


def test_alt_text_follows_the_prompt_until_a_person_writes_one(api):
    image = create(api)["images"][0]
    url = f"/v1/writer/images/{image['id']}/"
    assert api.patch(url, json={"prompt": "A red kite. Windy."}).get_json()["alt_text"] == "A red kite."
    edited = api.patch(url, json={"alt_text": "  My own words  "}).get_json()
    assert edited["alt_text"] == "My own words" and stored(image["id"]).alt_text_edited is True
    assert api.patch(url, json={"prompt": "A blue kite."}).get_json()["alt_text"] == "My own words"
    reset = api.patch(url, json={"alt_text": ""}).get_json()
    assert reset["alt_text"] == "A blue kite." and stored(image["id"]).alt_text_edited is False
    assert api.patch(url, json={"prompt": "A green kite."}).get_json()["alt_text"] == "A green kite."
    too_long = api.patch(url, json={"alt_text": "a" * 126})
    assert too_long.status_code == 400 and "at most 125" in too_long.get_json()["error"]


def test_title_and_caption(api):
    image = create(api)["images"][0]
    url = f"/v1/writer/images/{image['id']}/"
    edited = api.patch(url, json={"title": "Teapot", "caption": "Our teapot, at dusk."}).get_json()
    assert (edited["title"], edited["caption"]) == ("Teapot", "Our teapot, at dusk.")
    assert api.patch(url, json={"caption": ""}).get_json()["caption"] is None
    assert api.patch(url, json={"colour": "red"}).status_code == 400
    assert api.patch(url, json={}).status_code == 400


def test_moving_an_in_article_image_to_a_taken_position_swaps_the_two(api):
    images = create(api)["images"]
    first, second = images[1], images[2]
    moved = api.patch(f"/v1/writer/images/{first['id']}/", json={"position": 2})
    assert moved.status_code == 200 and moved.get_json()["position"] == 2
    assert stored(second["id"]).position == 1
    to_free = api.patch(f"/v1/writer/images/{second['id']}/", json={"position": 3}).get_json()
    assert to_free["position"] == 3 and stored(first["id"]).position == 2
    assert api.patch(f"/v1/writer/images/{first['id']}/", json={"position": 4}).status_code == 400
    featured = api.patch(f"/v1/writer/images/{images[0]['id']}/", json={"position": 1})
    assert featured.status_code == 400 and "Only in-article images" in featured.get_json()["error"]


@pytest.mark.parametrize("status", ["queued", "generating"])
def test_a_busy_image_refuses_prompt_edits_and_deletes_but_takes_alt_text(api, status):
    image = create(api)["images"][0]
    set_status(image["id"], status)
    url = f"/v1/writer/images/{image['id']}/"
    refused = api.patch(url, json={"prompt": "changed", "alt_text": "x"})
    assert refused.status_code == 409 and refused.get_json()["type"] == "Conflict"
    assert stored(image["id"]).alt_text != "x"  # the whole edit was refused
    assert api.patch(url, json={"alt_text": "Described"}).status_code == 200
    assert delete(api, url).status_code == 409
    assert stored(image["id"]).prompt == image["prompt"]


def test_a_generated_image_whose_prompt_changed_is_out_of_date(api):
    image = create(api)["images"][0]
    set_status(image["id"], "generated", generated_prompt=image["prompt"])
    url = f"/v1/writer/images/{image['id']}/"
    assert api.get(f"{CONTENT}{image['content_id']}/").get_json()["images"][0]["out_of_date"] is False
    edited = api.patch(url, json={"prompt": "A different teapot"}).get_json()
    assert edited["out_of_date"] is True and edited["status"] == "generated"
    assert stored(image["id"]).generated_prompt == image["prompt"]
    assert api.patch(url, json={"prompt": image["prompt"]}).get_json()["out_of_date"] is False


def test_delete_an_image(api):
    image = create(api)["images"][1]
    assert delete(api, f"/v1/writer/images/{image['id']}/").status_code == 204
    assert api.patch(f"/v1/writer/images/{image['id']}/", json={"prompt": "x"}).status_code == 404
    assert len(api.get(f"{CONTENT}{image['content_id']}/").get_json()["images"]) == 2


# --- another account ------------------------------------------------------------------------------

def test_another_accounts_article_and_image_answer_like_missing_ones(api, outsider):
    created = create(api)
    content_id, image_id = created["id"], created["images"][0]["id"]
    calls = [
        ("get", f"{CONTENT}{{}}/", None),
        ("patch", f"{CONTENT}{{}}/", {"title": "hijack"}),
        ("post", f"{CONTENT}{{}}/images/", {"image_type": "mobile", "prompt": "x"}),
        ("delete", f"{CONTENT}{{}}/", None),
    ]
    image_calls = [
        ("patch", "/v1/writer/images/{}/", {"prompt": "hijack"}),
        ("patch", "/v1/writer/images/{}/", {"alt_text": "hijack", "position": 2}),
        ("delete", "/v1/writer/images/{}/", None),
    ]
    for (method, template, body), owned in [*((c, content_id) for c in calls), *((c, image_id) for c in image_calls)]:
        theirs, missing = (send(outsider, method, template.format(target), body) for target in (owned, MISSING))
        assert theirs.status_code == missing.status_code == 404, (method, template)
        assert theirs.get_json() == missing.get_json(), (method, template)
    again = api.get(f"{CONTENT}{content_id}/").get_json()
    assert again["title"] == "Tea at dusk" and len(again["images"]) == 3
    assert again["images"][0]["prompt"] == created["images"][0]["prompt"]
    assert outsider.get(CONTENT).get_json()["count"] == 0


# --- generating an article's pending images ------------------------------------------------------

@pytest.fixture
def generating(api, own_queue):
    """An account with working settings and a queue no worker takes from."""
    with db.connection_context():
        factories.settings(factories.account_id("A"), provider="placeholder", model="placeholder-v1")
    return api


def test_content_ids_queue_only_pending_images_with_prompts(generating):
    api = generating
    first = create(api)
    second = api.post(CONTENT, json={"title": "Second", "images": [
        {"image_type": "featured", "prompt": "Waves"},
        {"image_type": "in_article", "position": 1, "prompt": ""},
        {"image_type": "in_article", "position": 2, "prompt": "Sand"}]}).get_json()
    ids_1 = [i["id"] for i in first["images"]]
    set_status(ids_1[1], "generated")
    set_status(ids_1[2], "failed")
    response = api.post(GENERATE, json={"content_ids": [first["id"], second["id"]]})
    assert response.status_code == 200, response.get_json()
    task_id = response.get_json()["task_id"]
    with db.connection_context():
        task = AITaskLog.get(AITaskLog.task_id == task_id)
    expected = [ids_1[0], second["images"][0]["id"], second["images"][2]["id"]]
    assert sorted(task.item_ids) == sorted(expected)
    assert {i.status for i in factories.images(expected)} == {"queued"}
    assert stored(ids_1[2]).status == "failed" and stored(second["images"][1]["id"]).status == "pending"


def test_content_ids_with_nothing_pending_is_a_400_that_says_so(generating):
    api = generating
    created = create(api)
    for image in created["images"]:
        set_status(image["id"], "generated")
    response = api.post(GENERATE, json={"content_ids": [created["id"]]})
    assert response.status_code == 400 and "no pending images" in response.get_json()["error"]
    with db.connection_context():
        assert AITaskLog.select().count() == 0


def test_content_ids_of_another_account_answer_like_missing_ones(generating, outsider):
    created = create(generating)
    theirs = outsider.post(GENERATE, json={"content_ids": [created["id"]]})
    missing = outsider.post(GENERATE, json={"content_ids": [MISSING]})
    assert theirs.status_code == missing.status_code == 404
    assert theirs.get_json()["error"] == f"No article with id {created['id']}."
    assert missing.get_json()["error"] == f"No article with id {MISSING}."
    assert {i.status for i in factories.images([i["id"] for i in created["images"]])} == {"pending"}


@pytest.mark.parametrize("content_ids, needle", [
    ([], "No IDs provided"), ("1", "must be a list"), ([0], "positive whole numbers"), ([True], "positive"),
    ([1, 1], "more than once"), (list(range(1, 202)), "At most 200"),
])
def test_malformed_content_ids_are_a_400(generating, content_ids, needle):
    response = generating.post(GENERATE, json={"content_ids": content_ids})
    assert response.status_code == 400 and needle in response.get_json()["error"]


def test_content_ids_dry_run_counts_the_pending_images(generating):
    created = create(generating)
    answer = generating.post(GENERATE, json={"content_ids": [created["id"]], "dry_run": True}).get_json()
    assert answer["dry_run"] is True and answer["images"] == 3
    with db.connection_context():
        assert AITaskLog.select().count() == 0
        assert Content.select().count() == 1


def test_a_page_of_articles_reads_their_images_in_one_query(api, caplog):
    for n in range(6):
        create(api, title=f"Article {n}")
    with caplog.at_level("DEBUG", logger="peewee"):
        listed = api.get(f"{CONTENT}?per_page=5").get_json()
    assert [len(c["images"]) for c in listed["results"]] == [3] * 5
    image_queries = [r.getMessage() for r in caplog.records if r.name == "peewee" and 'FROM "images"' in r.getMessage()]
    assert len(image_queries) == 1, image_queries
