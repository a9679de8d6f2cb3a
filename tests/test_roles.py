"""Roles: staff work with articles, prompts and generation; only the account's managers change the
settings, because the settings decide where the account's provider key is sent."""

import pytest

from jobs import image_settings
from models import IntegrationSettings, User, db
from tests import factories
from tests.api_helpers import GENERATE, PROMPTS, SETTINGS, ApiClient
from tests.fakes.openai_server import FakeOpenAI
from tests.page_helpers import Staff, section

PAGE = "/settings/integrations/image-generation"


def stored_config():
    with db.connection_context():
        row = image_settings.settings_row(factories.account_id("A"))
        return (dict(row.config), row.api_key_encrypted) if row else (None, None)


def test_staff_cannot_change_settings_through_the_api(app, personas):
    manager = ApiClient(app.test_client(), personas.owner)
    assert manager.put(SETTINGS, json={"provider": "openai", "model": "gpt-image-2",
                                       "api_key": "sk-account-key-1111"}).status_code == 200
    before = stored_config()
    staff = ApiClient(app.test_client(), personas.staff)
    refused = staff.put(SETTINGS, json={"base_url": "http://127.0.0.1:9/v1", "api_key": ""})
    assert refused.status_code == 403
    assert refused.get_json() == {"error": "Only the account's managers can change these settings.",
                                  "type": "PermissionDenied"}
    assert stored_config() == before
    shown = staff.get(SETTINGS).get_json()  # staff may still read them, never the key
    assert shown["provider"] == "openai" and shown["api_key_set"] is True
    assert "sk-account-key-1111" not in str(shown)


def test_staff_see_the_settings_page_read_only_and_cannot_post_it(app, personas):
    Staff(app.test_client(), personas.owner).post(PAGE, {"provider": "placeholder", "model": "placeholder-v1",
                                                         "image_type": "realistic", "max_in_article_images": "3",
                                                         "image_format": "webp", "is_active": "on"})
    before = stored_config()
    staff = Staff(app.test_client(), personas.staff)
    html = staff.get(PAGE).get_data(as_text=True)
    assert "Only the account's managers can change these settings" in section(html, "read-only")
    assert '<fieldset class="bare" disabled>' in html and 'id="save-settings"' not in html
    refused = staff.post(PAGE, {"provider": "openai", "model": "gpt-image-2", "image_type": "realistic",
                                "max_in_article_images": "3", "image_format": "webp", "is_active": "on"})
    assert refused.status_code == 403 and stored_config() == before
    manager_html = Staff(app.test_client(), personas.owner).get(PAGE).get_data(as_text=True)
    assert 'id="save-settings"' in manager_html and "read-only" not in manager_html


def test_staff_still_edit_prompts_and_generate(app, personas, redis_conn):
    factories.settings(factories.account_id("A"), provider="placeholder")
    staff = ApiClient(app.test_client(), personas.staff)
    assert staff.put(PROMPTS, json={"negative_prompt": "blurry"}).status_code == 200
    _, ids = factories.article(factories.account_id("A"))
    started = staff.post(GENERATE, json={"ids": ids})
    assert started.status_code == 200 and started.get_json()["task_id"]


def test_a_manager_who_changes_only_the_base_url_cannot_send_the_stored_key_there(app, personas, fake_openai):
    manager = ApiClient(app.test_client(), personas.owner)
    manager.put(SETTINGS, json={"provider": "openai", "model": "gpt-image-2", "api_key": fake_openai.api_key,
                                "base_url": fake_openai.base_url})
    with FakeOpenAI(api_key="sk-collector") as collector:
        moved = manager.put(SETTINGS, json={"base_url": collector.base_url})
        assert moved.status_code == 200 and moved.get_json()["api_key_set"] is False
        _, ids = factories.article(factories.account_id("A"))
        refused = manager.post(GENERATE, json={"ids": ids})
        assert refused.status_code == 400 and "needs an API key" in refused.get_json()["error"]
        assert collector.call_count == 0 and collector.model_list_calls == []
    with db.connection_context():
        assert IntegrationSettings.get().api_key_encrypted is None


@pytest.mark.parametrize("args, role", [([], "manager"), (["--role", "staff"], "staff")])
def test_create_user_gives_a_new_accounts_first_user_the_manager_role(runner, database, args, role):
    result = runner.invoke(args=["create-user", "first@new.test", "--password", "pw123456", "--account", "New",
                                 *args])
    assert result.exit_code == 0 and f"{role} user first@new.test" in result.output
    second = runner.invoke(args=["create-user", "second@new.test", "--password", "pw123456", "--account", "New"])
    assert second.exit_code == 0 and "staff user second@new.test" in second.output
    with db.connection_context():
        assert User.get(User.email == "first@new.test").role == role
