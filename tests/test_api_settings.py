import pytest

from models import IntegrationSettings, db
from tests.api_helpers import PROMPTS, SETTINGS, ApiClient


@pytest.fixture
def api(client, personas):
    return ApiClient(client, personas.owner)


def test_the_key_is_write_only_and_encrypted_at_rest(api):
    saved = api.put(SETTINGS, json={"provider": "openai", "model": "dall-e-3", "api_key": "sk-test-secret-9876"})
    assert saved.status_code == 200, saved.get_json()
    body = saved.get_json()
    assert body["api_key_set"] is True and body["api_key_last4"] == "9876"
    assert "sk-test-secret-9876" not in saved.get_data(as_text=True)
    assert "sk-test-secret-9876" not in api.get(SETTINGS).get_data(as_text=True)
    with db.connection_context():
        row = IntegrationSettings.get()
    assert "sk-test-secret" not in row.api_key_encrypted and "sk-test-secret" not in str(row.config)


def test_a_blank_key_keeps_the_old_one(api):
    api.put(SETTINGS, json={"provider": "openai", "model": "dall-e-3", "api_key": "sk-first-1111"})
    api.put(SETTINGS, json={"image_format": "png", "api_key": ""})
    body = api.get(SETTINGS).get_json()
    assert body["api_key_last4"] == "1111" and body["image_format"] == "png"


@pytest.mark.parametrize("values,field", [
    ({"provider": "midjourney"}, "provider"),
    ({"provider": "openai", "model": "dall-e-9"}, "model"),
    ({"max_in_article_images": 6}, "max_in_article_images"),
    ({"image_format": "gif"}, "image_format"),
    ({"base_url": "ftp://x"}, "base_url"),
    ({"desktop_enabled": "maybe"}, "desktop_enabled"),
])
def test_invalid_settings_are_refused_field_by_field(api, values, field):
    response = api.put(SETTINGS, json=values)
    assert response.status_code == 400
    assert field in response.get_json()["fields"]


def test_switching_provider_picks_a_model_of_that_provider(api):
    body = api.put(SETTINGS, json={"provider": "runware"}).get_json()
    assert body["provider"] == "runware" and body["model"].startswith("runware:")


def test_prompt_templates_are_validated_and_name_the_bad_placeholder(api):
    bad = api.put(PROMPTS, json={"image_prompt_template": "A {post_title.__class__} picture"})
    assert bad.status_code == 400
    assert "{post_title.__class__}" in bad.get_json()["error"]
    good = api.put(PROMPTS, json={"image_prompt_template": "{image_type}: {image_prompt} for {post_title}",
                                  "negative_prompt": "blurry"})
    assert good.status_code == 200
    assert api.get(PROMPTS).get_json() == {"image_prompt_template": "{image_type}: {image_prompt} for {post_title}",
                                           "negative_prompt": "blurry"}
