"""Tokens and users can be listed, revoked, expired and removed, from the CLI and a manager's Account page."""

import datetime

from models import ApiToken, User, db, utcnow
from tests.conftest import login
from tests.page_helpers import Staff, section
from webapp import accounts

ME = "/v1/system/settings/integrations/image_generation/"


def bearer(client, token):
    return client.get(ME, headers={"Authorization": f"Bearer {token}"})


def test_tokens_are_listed_and_a_revoked_one_stops_working_at_once(runner, client, personas):
    made = runner.invoke(args=["create-token", "owner@a.test", "--name", "cms"])
    token = made.output.strip()
    assert bearer(client, token).status_code == 200
    listing = runner.invoke(args=["list-tokens", "owner@a.test"])
    assert listing.exit_code == 0 and "cms" in listing.output and "last used" in listing.output
    assert token not in listing.output  # only ever shown once
    with db.connection_context():
        token_id = ApiToken.get(ApiToken.name == "cms").id
    assert runner.invoke(args=["revoke-token", str(token_id)]).exit_code == 0
    assert bearer(client, token).status_code == 401
    assert runner.invoke(args=["revoke-token", str(token_id)]).exit_code != 0  # already gone


def test_an_expired_token_is_refused(runner, client, personas):
    token = runner.invoke(args=["create-token", "owner@a.test", "--expires-days", "1"]).output.strip()
    assert bearer(client, token).status_code == 200
    with db.connection_context():
        ApiToken.update(expires_at=utcnow() - datetime.timedelta(seconds=1)).execute()
    assert bearer(client, token).status_code == 401
    assert "expires" in runner.invoke(args=["list-tokens", "owner@a.test"]).output


def test_a_deleted_user_can_no_longer_log_in_or_use_a_token(runner, app, personas):
    with db.connection_context():
        token = accounts.create_token(personas.staff)
    browser = app.test_client()
    login(browser, personas.staff)
    result = runner.invoke(args=["delete-user", "staff@a.test"])
    assert result.exit_code == 0, result.output
    assert browser.get("/").status_code == 302  # the open session ended
    assert bearer(app.test_client(), token).status_code == 401
    with db.connection_context():
        assert User.get_or_none(User.email == "staff@a.test") is None


def test_the_last_manager_of_an_account_cannot_be_deleted(runner, personas):
    runner.invoke(args=["delete-user", "admin@a.test"])
    refused = runner.invoke(args=["delete-user", "owner@a.test"])
    assert refused.exit_code != 0 and "last manager" in refused.output


def test_a_manager_sees_the_accounts_users_and_tokens_and_revokes_one(app, personas):
    with db.connection_context():
        staff_token = accounts.create_token(personas.staff, name="staff-script")
        outsider_token = accounts.create_token(personas.outsider, name="b-script")
        outsider_id = ApiToken.get(ApiToken.name == "b-script").id
    manager = Staff(app.test_client(), personas.owner)
    page = manager.get("/account").get_data(as_text=True)
    users = section(page, "account-users")
    assert "owner@a.test" in users and "staff@a.test" in users and "outsider@b.test" not in users
    tokens = section(page, "account-tokens")
    assert "staff-script" in tokens and "b-script" not in tokens and staff_token not in page
    with db.connection_context():
        staff_id = ApiToken.get(ApiToken.name == "staff-script").id
    assert manager.post(f"/account/tokens/{staff_id}/revoke", htmx=False).status_code == 302
    assert bearer(app.test_client(), staff_token).status_code == 401
    # Another account's token answers like a missing one, and stays.
    assert manager.post(f"/account/tokens/{outsider_id}/revoke", htmx=False).status_code == 404
    assert bearer(app.test_client(), outsider_token).status_code == 200


def test_staff_cannot_open_the_account_page(app, personas):
    staff = Staff(app.test_client(), personas.staff)
    with db.connection_context():
        accounts.create_token(personas.owner, name="owners")
        token_id = ApiToken.get(ApiToken.name == "owners").id
    assert staff.get("/account").status_code == 403
    assert staff.post(f"/account/tokens/{token_id}/revoke", htmx=False).status_code == 403
    with db.connection_context():
        assert ApiToken.get_or_none(ApiToken.id == token_id) is not None


def test_a_manager_removes_a_user_of_the_account(app, personas):
    manager = Staff(app.test_client(), personas.owner)
    assert manager.post(f"/account/users/{personas.staff.id}/delete", htmx=False).status_code == 302
    with db.connection_context():
        assert User.get_or_none(User.id == personas.staff.id) is None
    assert manager.post(f"/account/users/{personas.outsider.id}/delete", htmx=False).status_code == 404
    with db.connection_context():
        assert User.get_or_none(User.id == personas.outsider.id) is not None
