"""Settings → Image generation: every field, the write-only key, inline errors, the model select."""

import pytest

from jobs import image_settings
from models import IntegrationSettings, db
from tests import factories
from tests.page_helpers import Staff, section

PAGE = "/settings/integrations/image-generation"
MODELS = PAGE + "/models"
VALID = {"provider": "openai", "model": "gpt-image-2", "api_key": "", "base_url": "", "image_type": "artistic",
         "max_in_article_images": "4", "image_format": "png", "desktop_enabled": "on", "is_active": "on"}


@pytest.fixture
def owner(client, personas):
    return Staff(client, personas.owner)


def saved_view(account_name="A"):
    with db.connection_context():
        return image_settings.public_view(image_settings.settings_row(factories.account_id(account_name)))


def test_the_page_has_a_labelled_field_for_every_setting(owner):
    html = owner.get(PAGE).get_data(as_text=True)
    for field in ("provider", "model", "api_key", "base_url", "image_type", "max_in_article_images", "image_format",
                  "desktop_enabled", "mobile_enabled", "is_active"):
        assert f'id="{field}"' in html and f'name="{field}"' in html
    for field in ("provider", "model", "api_key", "base_url", "image_type", "max_in_article_images", "image_format"):
        assert f'<label for="{field}"' in html
    assert "<details" in html and "Advanced" in html
    assert 'name="csrf_token"' in html


def test_saving_stores_every_field_and_keeps_the_key_encrypted_and_masked(owner):
    response = owner.post(PAGE, {**VALID, "api_key": "sk-live-secret-abcd"})
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "Settings saved." in html and "Set, ends in <strong>abcd</strong>" in html
    assert "sk-live-secret" not in html
    view = saved_view()
    assert view == {**view, "provider": "openai", "model": "gpt-image-2", "image_type": "artistic",
                    "max_in_article_images": 4, "image_format": "png", "desktop_enabled": True,
                    "mobile_enabled": False, "is_active": True, "api_key_set": True, "api_key_last4": "abcd"}
    with db.connection_context():
        assert "sk-live-secret" not in IntegrationSettings.get().api_key_encrypted
    assert "sk-live-secret" not in owner.get(PAGE).get_data(as_text=True)


def test_a_blank_key_keeps_the_stored_one(owner):
    owner.post(PAGE, {**VALID, "api_key": "sk-first-1111"})
    owner.post(PAGE, {**VALID, "api_key": "", "image_format": "webp"})
    view = saved_view()
    assert view["api_key_last4"] == "1111" and view["image_format"] == "webp"


def test_unticked_boxes_turn_options_off(owner):
    owner.post(PAGE, {**VALID, "mobile_enabled": "on"})
    form = {k: v for k, v in VALID.items() if k not in ("desktop_enabled", "is_active")}
    owner.post(PAGE, form)
    view = saved_view()
    assert (view["desktop_enabled"], view["mobile_enabled"], view["is_active"]) == (False, False, False)


@pytest.mark.parametrize("change,field", [
    ({"provider": "midjourney"}, "provider"),
    ({"model": "dall-e-9"}, "model"),
    ({"max_in_article_images": "6"}, "max_in_article_images"),
    ({"max_in_article_images": "two"}, "max_in_article_images"),
    ({"image_format": "gif"}, "image_format"),
    ({"image_type": "oil"}, "image_type"),
    ({"base_url": "ftp://example.com"}, "base_url"),
])
def test_an_invalid_field_is_refused_with_its_error_beside_it(owner, change, field):
    response = owner.post(PAGE, {**VALID, **change})
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert f'id="{field}-error"' in html and f'aria-describedby="{field}-error"' in html
    assert "Nothing was saved" in html
    assert saved_view()["provider"] == "placeholder"  # nothing stored


def test_the_form_keeps_what_was_typed_when_it_is_refused(owner):
    html = owner.post(PAGE, {**VALID, "base_url": "ftp://typed.example", "api_key": "sk-typed-9999"}).get_data(
        as_text=True)
    assert 'value="ftp://typed.example"' in html and "<details class=\"field\" open>" in html
    assert "sk-typed-9999" not in html


def test_the_model_select_offers_only_the_chosen_providers_models(owner):
    html = owner.get(MODELS + "?provider=runware", htmx=True).get_data(as_text=True)
    field = section(html, "model-field")
    assert "runware:100@1" in field and "gpt-image-2" not in field and "placeholder-v1" not in field
    openai = section(owner.get(MODELS + "?provider=openai", htmx=True).get_data(as_text=True), "model-field")
    assert "gpt-image-2" in openai and "runware" not in openai and "needs an API key" in openai
    refused = owner.get(MODELS, query_string={"provider": "<b>nope</b>"}, htmx=True)
    assert refused.status_code == 400 and refused.headers["HX-Retarget"] == "#toasts"
    toast = refused.get_data(as_text=True)
    assert "Unknown provider" in toast and "&lt;b&gt;nope&lt;/b&gt;" in toast and "<b>" not in toast  # as text


def test_the_provider_select_reloads_the_model_field(owner):
    page = owner.get(PAGE).get_data(as_text=True)
    provider = section(page, "provider")
    assert f'hx-get="{MODELS}"' in provider and 'hx-target="#model-field"' in provider


def test_saving_without_a_csrf_token_is_refused(owner):
    assert owner.post(PAGE, VALID, csrf=False).status_code == 403
    assert owner.post(PAGE, VALID, csrf=False, htmx=False).status_code == 403
    assert saved_view()["provider"] == "placeholder"


def test_each_account_sees_and_saves_only_its_own_settings(client, personas):
    Staff(client, personas.owner).post(PAGE, {**VALID, "api_key": "sk-owner-7777"})
    outsider = Staff(client, personas.outsider)
    html = outsider.get(PAGE).get_data(as_text=True)
    assert "7777" not in html and "Not set." in html
    outsider.post(PAGE, {**VALID, "provider": "placeholder", "model": "placeholder-v1"})
    assert saved_view("A")["provider"] == "openai" and saved_view("B")["provider"] == "placeholder"


def test_a_plain_form_post_redirects_back_with_a_message(owner):
    response = owner.post(PAGE, VALID, htmx=False)
    assert response.status_code == 302 and response.headers["Location"].endswith(PAGE)
    assert "Settings saved." in owner.get(PAGE).get_data(as_text=True)


def test_provider_limits_are_saved_and_blank_means_auto(owner):
    owner.post(PAGE, {**VALID, "max_concurrent_calls": "4", "calls_per_minute": "15"})
    view = saved_view()
    assert view["max_concurrent_calls"] == 4 and view["calls_per_minute"] == 15
    owner.post(PAGE, {**VALID, "max_concurrent_calls": "", "calls_per_minute": ""})
    view = saved_view()
    assert view["max_concurrent_calls"] is None and view["calls_per_minute"] is None
    refused = owner.post(PAGE, {**VALID, "max_concurrent_calls": "99"})
    assert refused.status_code == 422 and "from 1 to 16" in refused.get_data(as_text=True)
