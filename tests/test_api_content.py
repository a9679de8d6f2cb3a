import pytest

from tests.api_helpers import ApiClient
from tests.conftest import login


@pytest.fixture
def api(client, personas):
    return ApiClient(client, personas.owner)


@pytest.fixture
def outsider(app, personas):
    return ApiClient(app.test_client(), personas.outsider)


ARTICLE = {"title": "Tea", "meta_title": "All about tea", "images": [
    {"image_type": "featured", "position": 0, "prompt": "A teapot"},
    {"image_type": "in_article", "position": 1, "prompt": "Tea leaves"},
]}


def test_it_creates_content_with_image_prompts(api):
    response = api.post("/v1/writer/content/", json=ARTICLE)
    assert response.status_code == 201
    body = response.get_json()
    assert [i["prompt"] for i in body["images"]] == ["A teapot", "Tea leaves"]
    assert all(i["status"] == "pending" and i["image_url"] is None for i in body["images"])
    again = api.get(f"/v1/writer/content/{body['id']}/").get_json()
    assert again["title"] == "Tea" and again["meta_title"] == "All about tea"


@pytest.mark.parametrize("body,needle", [
    ({"images": []}, "title"),
    ({"title": "x", "images": [{"image_type": "banner", "position": 0, "prompt": "p"}]}, "image_type"),
    ({"title": "x", "images": [{"image_type": "featured", "position": "1", "prompt": "p"}]}, "position"),
    ({"title": "x", "images": [{"image_type": "featured", "position": 0, "prompt": "p" * 9000}]}, "at most"),
    ({"title": "x", "images": [{"image_type": "featured", "position": 0, "prompt": "a"},
                               {"image_type": "featured", "position": 0, "prompt": "b"}]}, "same"),
    ({"title": "x", "images": "nope"}, "images"),
])
def test_bad_content_is_a_400_that_says_why(api, body, needle):
    response = api.post("/v1/writer/content/", json=body)
    assert response.status_code == 400
    assert needle in response.get_json()["error"]
    assert response.get_json()["type"] == "ValidationError"


def test_a_body_that_is_not_a_json_object_is_a_400(api):
    assert api.post("/v1/writer/content/", json=[1, 2]).status_code == 400
    response = api.client.post("/v1/writer/content/", data="title=x", headers=api.headers)
    assert response.status_code == 400 and "application/json" in response.get_json()["error"]


def test_another_accounts_content_answers_like_a_missing_one(api, outsider):
    content_id = api.post("/v1/writer/content/", json=ARTICLE).get_json()["id"]
    theirs = outsider.get(f"/v1/writer/content/{content_id}/")
    missing = outsider.get("/v1/writer/content/999999/")
    assert theirs.status_code == missing.status_code == 404
    assert theirs.get_json() == missing.get_json()
    listed = outsider.get(f"/v1/writer/images/?content_id={content_id}").get_json()
    assert listed == outsider.get("/v1/writer/images/?content_id=999999").get_json()
    assert listed["results"] == [] and listed["count"] == 0


def test_prompt_edit_and_its_scoping(api, outsider):
    image_id = api.post("/v1/writer/content/", json=ARTICLE).get_json()["images"][0]["id"]
    edited = api.patch(f"/v1/writer/images/{image_id}/", json={"prompt": "A green teapot"})
    assert edited.status_code == 200 and edited.get_json()["prompt"] == "A green teapot"
    theirs = outsider.patch(f"/v1/writer/images/{image_id}/", json={"prompt": "hijack"})
    assert theirs.status_code == 404
    assert api.get(f"/v1/writer/images/?content_id={edited.get_json()['content_id']}").get_json()[
        "results"][0]["prompt"] == "A green teapot"


def test_image_list_filters_by_status(api):
    api.post("/v1/writer/content/", json=ARTICLE)
    assert len(api.get("/v1/writer/images/?status=pending").get_json()["results"]) == 2
    assert api.get("/v1/writer/images/?status=generated").get_json()["results"] == []
    assert api.get("/v1/writer/images/?status=bogus").status_code == 400


def test_session_users_need_the_csrf_header_for_api_writes(client, personas):
    token = login(client, personas.owner)
    assert client.post("/v1/writer/content/", json=ARTICLE).status_code == 403
    assert client.post("/v1/writer/content/", json=ARTICLE, headers={"X-CSRFToken": token}).status_code == 201
