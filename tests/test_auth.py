from models import ApiToken, db
from tests.conftest import csrf_token, login


def test_every_page_needs_a_login(client, personas):
    response = client.get("/")
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]


def test_login_with_the_right_password_opens_the_site(client, personas):
    login(client, personas.owner)
    page = client.get("/")
    assert page.status_code == 200
    assert b"owner@a.test" in page.data


def test_login_with_a_wrong_password_is_refused(client, personas):
    token = csrf_token(client)
    response = client.post("/login", data={"email": "owner@a.test", "password": "nope", "csrf_token": token})
    assert response.status_code == 401
    assert b"Wrong email or password" in response.data
    assert client.get("/").status_code == 302


def test_login_never_redirects_to_another_site(client, personas):
    token = csrf_token(client)
    response = client.post("/login?next=//evil.example/x",
                           data={"email": "owner@a.test", "password": personas.password, "csrf_token": token})
    assert response.headers["Location"] == "/"


def test_an_htmx_request_without_a_session_reloads_the_page_instead_of_swapping_the_login_in(client, personas):
    # A poll or a button after the session ended: htmx reloads the page, whose own request goes to the login.
    response = client.get("/writer/images/articles/1", headers={"HX-Request": "true"})
    assert response.status_code == 401 and response.headers["HX-Refresh"] == "true"
    assert "Location" not in response.headers and response.get_data() == b""
    response = client.post("/writer/images/generate", data={"ids": "1"}, headers={"HX-Request": "true"})
    assert response.status_code == 401 and response.headers["HX-Refresh"] == "true"


def test_logout_ends_the_session(client, personas):
    token = login(client, personas.owner)
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/").status_code == 302


def test_a_form_post_without_csrf_token_is_refused(client, personas):
    login(client, personas.owner)
    assert client.post("/logout").status_code == 403
    assert client.get("/").status_code == 200  # still logged in


def test_login_form_itself_needs_the_csrf_token(client, personas):
    client.get("/login")
    response = client.post("/login", data={"email": "owner@a.test", "password": personas.password})
    assert response.status_code == 403


def test_session_cookie_is_httponly_and_samesite(client, personas):
    token = csrf_token(client)
    response = client.post("/login", data={"email": "owner@a.test", "password": personas.password,
                                           "csrf_token": token})
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie


def test_created_token_is_stored_only_as_a_hash(runner, personas):
    result = runner.invoke(args=["create-token", "owner@a.test"])
    assert result.exit_code == 0, result.output
    token = result.output.strip()
    assert len(token) >= 40
    with db.connection_context():
        stored = [t.token_hash for t in ApiToken.select()]
    assert stored and token not in stored


def test_api_without_credentials_answers_json_401(client, personas):
    response = client.get("/v1/writer/images/")
    assert response.status_code == 401
    assert response.get_json() == {"error": "Authentication required.", "type": "AuthError"}


def test_a_wrong_bearer_token_is_refused(client, personas):
    response = client.get("/v1/writer/images/", headers={"Authorization": "Bearer not-a-token"})
    assert response.status_code == 401


def test_session_cookie_is_secure_when_served_over_https(client, personas):
    token = csrf_token(client)
    response = client.post("/login", data={"email": "owner@a.test", "password": personas.password,
                                           "csrf_token": token}, headers={"X-Forwarded-Proto": "https"})
    assert "Secure" in response.headers["Set-Cookie"]
    plain = client.application.test_client()
    token = csrf_token(plain)
    response = plain.post("/login", data={"email": "owner@a.test", "password": personas.password,
                                          "csrf_token": token})
    assert "Secure" not in response.headers["Set-Cookie"]


def test_pages_refuse_to_be_framed(client, personas):
    assert client.get("/login").headers["X-Frame-Options"] == "DENY"
