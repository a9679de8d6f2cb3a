import pytest

from models import IntegrationSettings, db
from tests.api_helpers import PROMPTS, SETTINGS, ApiClient


@pytest.fixture
def api(client, personas):
    return ApiClient(client, personas.owner)


def test_the_key_is_write_only_and_encrypted_at_rest(api):
    saved = api.put(SETTINGS, json={"provider": "openai", "model": "gpt-image-2", "api_key": "sk-test-secret-9876"})
    assert saved.status_code == 200, saved.get_json()
    body = saved.get_json()
    assert body["api_key_set"] is True and body["api_key_last4"] == "9876"
    assert "sk-test-secret-9876" not in saved.get_data(as_text=True)
    assert "sk-test-secret-9876" not in api.get(SETTINGS).get_data(as_text=True)
    with db.connection_context():
        row = IntegrationSettings.get()
    assert "sk-test-secret" not in row.api_key_encrypted and "sk-test-secret" not in str(row.config)


def test_a_blank_key_keeps_the_old_one(api):
    api.put(SETTINGS, json={"provider": "openai", "model": "gpt-image-2", "api_key": "sk-first-1111"})
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
    ({"max_in_article_images": "²"}, "max_in_article_images"),
    ({"provider": "openai", "model": "dall-e-3"}, "model"),
    ({"provider": "openai", "model": "gpt-image-2", "quality": "max"}, "quality"),
    ({"sizes": {"hero": "1024x1024"}}, "sizes"),
    ({"provider": "openai_compatible", "model": "flux-local"}, "base_url"),
    ({"provider": "openai_compatible", "model": "x", "base_url": "http://127.0.0.1:7860/v1", "price_per_image": "-1"},
     "price_per_image"),
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


@pytest.mark.parametrize("provider, model, size, rule", [
    ("openai", "gpt-image-2", "1000x1000", "1000x1000: width and height must be multiples of 16 (GPT Image 2 family)."),
    ("openai", "gpt-image-2", "3840x1024", "3840x1024: the aspect ratio must be between 1:3 and 3:1"),
    ("openai", "gpt-image-2", "3840x3840", "at most 8,294,400 pixels (8.3 MP) per image"),
    ("openai", "gpt-image-2", "4096x2304", "each side must be from 256 to 3840 pixels"),
    ("runware", "runware:100@1", "1536x864", "multiples of 64 (FLUX.1 family)"),
    ("runware", "runware:100@1", "2560x1024", "each side must be from 512 to 2048 pixels (FLUX.1 family)"),
    ("placeholder", "placeholder-v1", "wide", "'wide' is not WIDTHxHEIGHT"),
])
def test_a_size_is_checked_against_the_models_rule_and_the_message_names_it(api, provider, model, size, rule):
    response = api.put(SETTINGS, json={"provider": provider, "model": model, "api_key": "k-123456",
                                       "sizes": {"featured": size}})
    assert response.status_code == 400
    assert rule in response.get_json()["fields"]["sizes.featured"], response.get_json()


def test_sizes_and_quality_per_model_are_stored_and_shown(api):
    body = api.put(SETTINGS, json={"provider": "openai", "model": "gpt-image-2.6-sunburst", "api_key": "sk-1234",
                                   "quality": "xhigh", "sizes": {"featured": "1536x800", "mobile": "1024x1536"}})
    assert body.status_code == 200, body.get_json()
    shown = api.get(SETTINGS).get_json()
    assert shown["quality"] == "xhigh"
    assert shown["sizes"] == {"featured": "1536x800", "in_article": "1536x1024", "desktop": "1536x864",
                              "mobile": "1024x1536"}
    assert shown["model_status"] == {"state": "active", "shutdown_date": None, "replacement": None}


def test_switching_to_a_model_without_those_levels_or_sizes_falls_back_to_its_defaults(api):
    api.put(SETTINGS, json={"provider": "openai", "model": "gpt-image-2.5-flare", "api_key": "sk-1234",
                            "quality": "max", "sizes": {"featured": "1536x864"}})
    body = api.put(SETTINGS, json={"provider": "runware", "api_key": "rw-1234"}).get_json()
    # FLUX.1 takes no 1536x864 and has no quality levels: its own defaults, shown in the answer
    assert body["sizes"]["featured"] == "1344x768" and body["quality"] is None
    body = api.put(SETTINGS, json={"provider": "openai", "model": "gpt-image-2", "api_key": "sk-1234"}).get_json()
    assert body["quality"] == "medium"


def test_a_compatible_server_takes_the_model_name_and_price_the_manager_types(api):
    body = api.put(SETTINGS, json={"provider": "openai_compatible", "model": "sdxl-turbo",
                                   "base_url": "http://127.0.0.1:7860/v1", "price_per_image": "0.002",
                                   "sizes": {"featured": "1000x600"}})
    assert body.status_code == 200, body.get_json()
    shown = body.get_json()
    assert (shown["model"], shown["price_per_image"], shown["sizes"]["featured"]) == ("sdxl-turbo", "0.002",
                                                                                     "1000x600")


def test_changing_the_base_url_or_provider_clears_the_key_unless_a_new_one_comes_with_it(api):
    api.put(SETTINGS, json={"provider": "openai", "model": "gpt-image-2", "api_key": "sk-real-key-4242"})
    moved = api.put(SETTINGS, json={"base_url": "http://127.0.0.1:9/v1"}).get_json()
    assert moved["api_key_set"] is False and moved["base_url"] == "http://127.0.0.1:9/v1"
    with db.connection_context():
        assert IntegrationSettings.get().api_key_encrypted is None
    api.put(SETTINGS, json={"api_key": "sk-real-key-4242"})
    assert api.put(SETTINGS, json={"image_format": "png"}).get_json()["api_key_set"] is True  # other fields keep it
    assert api.put(SETTINGS, json={"provider": "runware"}).get_json()["api_key_set"] is False
    both = api.put(SETTINGS, json={"provider": "openai", "model": "gpt-image-2", "base_url": "",
                                   "api_key": "sk-new-key-5151"}).get_json()
    assert both["api_key_set"] is True and both["api_key_last4"] == "5151"


def test_is_active_takes_only_true_or_false(api):
    refused = api.put(SETTINGS, json={"is_active": "yes"})
    assert refused.status_code == 400 and "is_active" in refused.get_json()["fields"]
    assert api.put(SETTINGS, json={"is_active": False}).get_json()["is_active"] is False


def test_an_in_article_orientation_saved_before_sizes_per_placement_becomes_its_size(api):
    api.put(SETTINGS, json={"provider": "placeholder"})
    with db.connection_context():
        row = IntegrationSettings.get()
        row.config = {**row.config, "in_article_orientation": "portrait"}  # as older versions saved it
        row.save()
    assert api.get(SETTINGS).get_json()["sizes"]["in_article"] == "1024x1536"
    saved = api.put(SETTINGS, json={"image_format": "png"}).get_json()
    assert saved["sizes"]["in_article"] == "1024x1536"
    with db.connection_context():
        config = IntegrationSettings.get().config
    assert config["sizes"]["in_article"] == "1024x1536" and "in_article_orientation" not in config
