"""Login against an outside attacker: guessing meets growing waits and then a lock, `next` never leaves
the site, a session ends everywhere at logout and after being idle, unknown emails cost what known ones do."""

import pytest

from models import db
from tests.conftest import Personas, csrf_token, login
from webapp import accounts, login_throttle


@pytest.fixture
def throttled_user(personas, redis_conn):
    with db.connection_context():
        user = accounts.create_user("guessed@a.test", Personas.password, account_name="A", role="staff")
    yield user
    for key in redis_conn.scan_iter(login_throttle.PREFIX + "*"):
        redis_conn.delete(key)


def attempt(client, email, password):
    token = csrf_token(client)
    return client.post("/login", data={"email": email, "password": password, "csrf_token": token})


def test_guessing_meets_a_growing_wait_then_a_lock_that_even_the_right_password_cannot_pass(
        client, throttled_user, redis_conn):
    answers = [attempt(client, throttled_user.email, f"guess-{n}") for n in range(50)]
    statuses = [a.status_code for a in answers]
    assert statuses[:5] == [401] * 5  # a few typos cost nothing
    assert 429 in statuses[5:7] and b"wait 1 second" in answers[statuses.index(429)].data
    checked = statuses.count(401)
    assert checked < 10, statuses  # most guesses were never checked
    # Time passes (the waits are honoured): failures pile up until the account locks.
    for count in range(checked, login_throttle.LIMITS["email"][1]):
        redis_conn.hset(login_throttle._key("email", throttled_user.email), "last", 0)
        attempt(client, throttled_user.email, f"late-guess-{count}")
    locked = attempt(client, throttled_user.email, Personas.password)
    assert locked.status_code == 429 and b"locked for 15 more minutes" in locked.data
    assert client.get("/").status_code == 302  # not logged in


def test_the_right_password_before_any_wait_forgives_the_typos(client, throttled_user):
    for n in range(3):
        assert attempt(client, throttled_user.email, f"typo-{n}").status_code == 401
    assert attempt(client, throttled_user.email, Personas.password).status_code == 302
    client.post("/logout", data={"csrf_token": csrf_token(client)})
    assert attempt(client, throttled_user.email, "one more typo").status_code == 401  # the count started over


@pytest.mark.parametrize("target", ["//evil.test/x", "/\t/evil.test", "/\\evil.test", "https://evil.test/",
                                    "/\n/evil.test", " //evil.test", "/ /evil.test", "javascript:alert(1)"])
def test_next_never_leaves_the_site(client, personas, target):
    token = csrf_token(client)
    response = client.post("/login", query_string={"next": target},
                           data={"email": "owner@a.test", "password": personas.password, "csrf_token": token})
    assert response.status_code == 302 and response.headers["Location"] == "/"


def test_next_keeps_a_same_site_path(client, personas):
    token = csrf_token(client)
    response = client.post("/login", query_string={"next": "/writer/images?status=failed"},
                           data={"email": "owner@a.test", "password": personas.password, "csrf_token": token})
    assert response.headers["Location"] == "/writer/images?status=failed"


def test_a_session_cookie_copied_before_logout_no_longer_works_after_it(app, personas):
    first, copy = app.test_client(), app.test_client()
    token = login(first, personas.owner)
    cookie = first.get_cookie("session")
    copy.set_cookie("session", cookie.value)
    assert copy.get("/").status_code == 200
    first.post("/logout", data={"csrf_token": token})
    assert copy.get("/").status_code == 302  # every session of the user ended
    assert login(first, personas.owner) and first.get("/").status_code == 200  # a new login works


def test_an_idle_session_expires(app, personas):
    app.config["SESSION_IDLE_SECONDS"] = 3600
    client = app.test_client()
    login(client, personas.owner)
    with client.session_transaction() as session:
        session["seen"] -= 3601
    assert client.get("/").status_code == 302


def test_unknown_and_known_emails_cost_one_password_check_each(client, personas, monkeypatch):
    checks = []
    real = accounts.check_password_hash
    monkeypatch.setattr(accounts, "check_password_hash", lambda *a: checks.append(1) or real(*a))
    made = []
    monkeypatch.setattr(accounts, "generate_password_hash", lambda *a, **k: made.append(1))
    accounts.authenticate("owner@a.test", "wrong")
    accounts.authenticate("nobody@a.test", "wrong")
    assert checks == [1, 1] and made == []  # no extra hashing for an unknown email
