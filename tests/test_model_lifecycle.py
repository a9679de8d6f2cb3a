"""Models come and go: retired models are refused with their replacement everywhere the account looks,
announced shutdown dates are read from the provider's model list and warned about ahead of time, and the
Settings page offers sizes and quality per model."""

import datetime as dt
import re

import pytest
from rq import Queue

from jobs import model_check
from models import IntegrationSettings, ModelNotice, db
from tests import factories
from tests.api_helpers import GENERATE, SETTINGS, ApiClient
from tests.page_helpers import Staff, section

PAGE = "/settings/integrations/image-generation"
MODELS = PAGE + "/models"
IMAGES = "/writer/images"


@pytest.fixture
def owner(client, personas):
    return Staff(client, personas.owner)


@pytest.fixture
def api(app, personas):
    return ApiClient(app.test_client(), personas.owner)


def openai_account(fake, model="gpt-image-2", account="A"):
    """Account settings pointing at the fake; `model` is forced into the row, as if saved long ago."""
    a = factories.account_id(account)
    factories.settings(a, provider="openai", model="gpt-image-2", api_key=fake.api_key, base_url=fake.base_url)
    with db.connection_context():
        row = IntegrationSettings.get(IntegrationSettings.account == a)
        row.config = {**row.config, "model": model}
        row.save()
    return a


def test_an_account_on_a_retired_model_sees_it_shut_down_and_its_replacement(owner, fake_openai):
    openai_account(fake_openai, "dall-e-3")
    settings = owner.get(PAGE).get_data(as_text=True)
    notice = section(settings, "model-status")
    assert "was shut down on 2026-05-12" in notice and "gpt-image-2.6-sunburst" in notice
    assert 'value="dall-e-3" selected' in section(settings, "model")  # shown as saved, not silently replaced
    images = owner.get(IMAGES).get_data(as_text=True)
    banner = section(images, "model-retired")
    assert "dall-e-3" in banner and "2026-05-12" in banner and "gpt-image-2.6-sunburst" in banner
    assert f'href="{PAGE}"' in banner


def test_saving_the_settings_while_on_a_retired_model_asks_for_another_model(owner, fake_openai):
    openai_account(fake_openai, "gpt-image-1")
    refused = owner.post(PAGE, {"provider": "openai", "model": "gpt-image-1", "image_type": "realistic",
                                "max_in_article_images": "3", "image_format": "png", "is_active": "on"})
    assert refused.status_code == 422
    assert "shut down the model gpt-image-1 on 2026-10-23" in refused.get_data(as_text=True)
    with db.connection_context():
        assert IntegrationSettings.get().config["model"] == "gpt-image-1"


def test_check_models_stores_an_announced_shutdown_and_settings_warn_ahead(runner, owner, api, fake_openai):
    a = openai_account(fake_openai)
    fake_openai.shutdown_dates["gpt-image-2"] = "2027-03-01"
    result = runner.invoke(args=["check-models"])
    assert result.exit_code == 0, result.output
    assert f"account {a}: gpt-image-2 shuts down on 2027-03-01" in result.output
    assert len(fake_openai.model_list_calls) == 1
    assert fake_openai.model_list_calls[0].headers["Authorization"] == f"Bearer {fake_openai.api_key}"
    with db.connection_context():
        notice = ModelNotice.get(ModelNotice.account == a, ModelNotice.model == "gpt-image-2")
    assert notice.shutdown_date == dt.date(2027, 3, 1)
    assert "Your model shuts down on 2027-03-01" in section(owner.get(PAGE).get_data(as_text=True), "model-status")
    assert "shuts down on" in section(owner.get(IMAGES).get_data(as_text=True), "model-deprecated")
    shown = api.get(SETTINGS).get_json()["model_status"]
    assert shown == {"state": "deprecated", "shutdown_date": "2027-03-01", "replacement": None}
    # Generation still works until the date: the request gets past the settings (to the missing id).
    assert api.post(GENERATE, json={"ids": [999999]}).status_code == 404


def test_an_announced_date_that_has_passed_retires_the_model_for_that_account(runner, personas, client, fake_openai):
    a = openai_account(fake_openai)
    fake_openai.shutdown_dates["gpt-image-2"] = "2026-11-30"
    assert runner.invoke(args=["check-models"]).exit_code == 0
    _, ids = factories.article(a)
    refused = ApiClient(client, personas.owner).post(GENERATE, json={"ids": ids})
    assert refused.status_code == 400 and "shut down the model gpt-image-2 on 2026-11-30" in refused.get_json()["error"]
    assert fake_openai.call_count == 0


def test_check_models_reports_an_account_whose_list_cannot_be_read(runner, personas, fake_openai):
    a = openai_account(fake_openai)
    with db.connection_context():
        row = IntegrationSettings.get(IntegrationSettings.account == a)
    factories.settings(a, api_key="sk-wrong-0000")
    result = runner.invoke(args=["check-models"])
    assert result.exit_code == 0
    assert f"account {row.account_id}: not checked: OpenAI rejected the API key" in result.output


def test_the_daily_check_is_enqueued_once_a_day_across_workers(redis_conn):
    redis_conn.delete(model_check.DAILY_KEY)
    queue = Queue(f"check-models-{id(redis_conn)}", connection=redis_conn)
    try:
        assert model_check.schedule_daily(queue) is True
        assert model_check.schedule_daily(queue) is False  # a second worker, the same day
        assert queue.count == 1 and "check-models" in queue.jobs[0].description
        assert 0 < redis_conn.ttl(model_check.DAILY_KEY) <= 24 * 3600
    finally:
        queue.empty()
        redis_conn.delete(model_check.DAILY_KEY)


def test_the_settings_page_offers_sizes_and_quality_for_the_chosen_model(owner):
    field = section(owner.get(MODELS + "?provider=openai&model=gpt-image-2.6-sunburst", htmx=True).get_data(
        as_text=True), "model-field")
    for placement, default in (("featured", "1536x864"), ("in_article", "1536x1024"), ("desktop", "1536x864"),
                               ("mobile", "864x1536")):
        assert re.search(rf'id="size_{placement}"[^>]*value="{default}"', field), placement
    for preset, size in (("1:1", "1024x1024"), ("3:2", "1536x1024"), ("2:3", "1024x1536"), ("16:9", "1536x864"),
                         ("9:16", "864x1536"), ("1.91:1", "1536x800")):
        assert f'<option value="{size}">{preset}</option>' in field
    assert "multiples of 16 from 256 to 3840" in field
    assert all(f'<option value="{q}"' in section(field, "quality") for q in ("low", "medium", "high", "xhigh", "max"))
    flux = section(owner.get(MODELS + "?provider=runware", htmx=True).get_data(as_text=True), "model-field")
    assert re.search(r'id="size_featured"[^>]*value="1344x768"', flux) and 'id="quality"' not in flux
    assert "multiples of 64 from 512 to 2048" in flux


def test_a_size_typed_on_the_page_is_saved_or_refused_by_the_models_rule(owner):
    form = {"provider": "openai", "model": "gpt-image-2", "api_key": "sk-page-1234", "image_type": "realistic",
            "max_in_article_images": "3", "image_format": "webp", "is_active": "on", "quality": "high",
            "background": "opaque", "size_featured": "1536x800", "size_in_article": "1024x1024",
            "size_desktop": "", "size_mobile": "864x1536"}
    assert owner.post(PAGE, form).status_code == 200
    with db.connection_context():
        config = IntegrationSettings.get().config
    assert config["sizes"] == {"featured": "1536x800", "in_article": "1024x1024", "mobile": "864x1536"}
    assert config["quality"] == "high"
    refused = owner.post(PAGE, {**form, "size_mobile": "860x1536"})
    assert refused.status_code == 422
    assert "860x1536: width and height must be multiples of 16" in section(refused.get_data(as_text=True),
                                                                           "sizes-mobile-error")
