"""Odd input at every edge answers a 400 or a 404 with a sentence, never a 500, and stores nothing:
ids that are not ASCII digits or do not fit the database, text that is not valid UTF-8 or carries NUL,
JSON nested absurdly deep, flags that are not booleans."""

import json

import pytest

from models import Content, Images, db
from tests import factories
from tests.api_helpers import ApiClient
from tests.page_helpers import Staff

ODD_IDS = ["²", "١٢", str(10**23), "2147483648", "0", "-1", "1e3", "0x10", "%20", "1.5"]
ID_ROUTES = [
    ("GET", "/v1/writer/content/{}/"), ("PATCH", "/v1/writer/images/{}/"), ("GET", "/media/images/{}.png"),
    ("GET", "/writer/images/articles/{}"), ("POST", "/writer/images/{}/prompt"),
]
QUERY_ROUTES = [("/v1/writer/images/?content_id={}", 400), ("/writer/images?page={}", 200)]


@pytest.fixture
def api(client, personas):
    return ApiClient(client, personas.owner)


@pytest.fixture
def staff(app, personas):
    return Staff(app.test_client(), personas.owner)


def stored_counts():
    with db.connection_context():
        return Content.select().count(), Images.select().count()


@pytest.mark.parametrize("method, route", ID_ROUTES)
def test_an_odd_id_in_a_path_is_a_404(api, staff, method, route):
    # One test per route, every odd id inside it: each test's logins cost a password hash.
    for odd in ODD_IDS:
        url = route.format(odd)
        if url.startswith("/v1/"):
            answer = api.client.open(url, method=method, headers=api.headers,
                                     json={"prompt": "x"} if method != "GET" else None)
        else:
            answer = staff.client.open(url, method=method, headers={"HX-Request": "true", "X-CSRFToken": staff.token},
                                       data={"prompt": "x"} if method == "POST" else None)
        assert answer.status_code == 404, (url, answer.status_code)


@pytest.mark.parametrize("route, status", QUERY_ROUTES)
def test_an_odd_number_in_a_query_string_is_refused_or_ignored(api, staff, route, status):
    for odd in ODD_IDS:
        url = route.format(odd)
        answer = api.get(url) if url.startswith("/v1/") else staff.get(url)
        assert answer.status_code == status, (url, answer.status_code)


def test_a_task_id_with_a_nul_or_a_surrogate_is_a_404(api, staff):
    for task_id in ("%00", "abc%00def", "%ED%A0%80", "x" * 300):
        assert api.get(f"/v1/system/task_progress/{task_id}/").status_code == 404, task_id
        assert staff.get(f"/writer/tasks/{task_id}/progress", htmx=True).status_code == 404, task_id


def test_odd_ids_in_the_generate_form_are_a_400(staff):
    for odd in ["²", str(10**23), "0", "abc"]:
        assert staff.post("/writer/images/generate", {"ids": odd}).status_code == 400, odd


def test_text_that_cannot_be_stored_is_a_400_and_nothing_is_stored(api):
    before = stored_counts()
    for field in ("title", "meta_title"):
        for text in ("lone \ud800 surrogate", "nul \x00 inside"):
            body = {"title": "ok", "images": [{"image_type": "featured", "position": 0, "prompt": "fine"}],
                    field: text}
            answer = api.client.post("/v1/writer/content/", data=json.dumps(body), headers=api.headers,
                                     content_type="application/json")
            assert answer.status_code == 400 and answer.get_json()["type"] == "ValidationError", (field, text)
    assert stored_counts() == before


def test_a_lone_surrogate_in_a_prompt_is_a_400(api):
    _, ids = factories.article(factories.account_id("A"))
    answer = api.client.patch(f"/v1/writer/images/{ids[0]}/", data='{"prompt": "bad \\ud800"}',
                              headers=api.headers, content_type="application/json")
    assert answer.status_code == 400
    assert factories.image(ids[0]).prompt == "A lighthouse at dusk"


def test_json_nested_100000_deep_is_a_400(api):
    body = "[" * 100_000 + "]" * 100_000
    answer = api.client.post("/v1/writer/content/", data=body, headers=api.headers,
                             content_type="application/json")
    assert answer.status_code == 400 and "nested" in answer.get_json()["error"]


def test_max_in_article_images_and_flags_refuse_odd_values(api):
    for value in ("²", "yes", 1.5):
        for field in ("max_in_article_images", "is_active", "desktop_enabled"):
            answer = api.put("/v1/system/settings/integrations/image_generation/", json={field: value})
            assert answer.status_code == 400 and field in answer.get_json()["fields"], (field, value)


@pytest.mark.parametrize("field", ["prompt", "image_prompt_template"])
def test_a_nul_in_a_form_field_is_a_400(staff, field):
    _, ids = factories.article(factories.account_id("A"))
    url = f"/writer/images/{ids[0]}/prompt" if field == "prompt" else "/thinker/prompts"
    answer = staff.post(url, {field: "nul \x00 here"})
    assert answer.status_code == 400
    assert factories.image(ids[0]).prompt == "A lighthouse at dusk"


def test_a_nul_in_an_api_query_is_a_json_400(client, personas):
    api = ApiClient(client, personas.owner)
    answer = api.get("/v1/writer/images/", query_string={"status": "x\x00y"})
    assert answer.status_code == 400
    assert answer.get_json() == {"error": "status contains a NUL character.", "type": "ValidationError"}
