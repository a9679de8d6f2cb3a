"""Images out (issue #14): SEO file names, login-free public URLs that survive a regeneration for the
grace period and are then removed with their files, and the article's images as a ZIP. Generated with
the placeholder provider through a real worker, stored in real storage (every backend for serving and
removing)."""

import dataclasses
import datetime as dt
import hashlib
import io
import json
import secrets
import time
import zipfile
from urllib.parse import urlsplit

import pytest

from config import load_config
from jobs import publishing
from jobs.storage import NotStored, get_storage, image_key
from models import Content, Images, PublicImage, db, utcnow
from tests import factories, flow
from tests import test_storage_backends as suite
from tests.api_helpers import ApiClient
from tests.conftest import login

s3_server, s3 = suite.s3_server, suite.s3


@pytest.fixture
def api(client, personas, worker):
    api = ApiClient(client, personas.owner)
    saved = api.put(flow.SETTINGS, json={"provider": "placeholder", "model": "placeholder-v1", "image_format": "webp",
                                         "desktop_enabled": True, "mobile_enabled": True})
    assert saved.status_code == 200, saved.get_json()
    return api


def new_article(api, slug, images=(("featured", 0, "A red kite in a blue sky"),
                                   ("in_article", 1, "Children running on a beach"))) -> tuple[int, list[int]]:
    created = api.post("/v1/writer/content/", json={"title": "Kites", "images": [
        {"image_type": t, "position": p, "prompt": prompt} for t, p, prompt in images]})
    assert created.status_code == 201, created.get_json()
    body = created.get_json()
    with db.connection_context():
        # Set here rather than derived from the title, so these tests do not depend on the slug rules.
        Content.update(slug=slug).where(Content.id == body["id"]).execute()
    return body["id"], [i["id"] for i in body["images"]]


def generate(api, ids, **options) -> None:
    final = flow.wait_done(api, flow.generate(api, ids, **options))
    assert final["state"] == "done" and final["totals"]["generated"] == len(ids), final


def image_json(api, image_id) -> dict:
    row = api.get(f"/v1/writer/images/?content_id={factories.image(image_id).content_id}").get_json()["results"]
    return next(r for r in row if r["id"] == image_id)


def anonymous_get(app, url, **kw):
    """What a reader's browser or a CDN gets: a client of its own, no session, no token."""
    parts = urlsplit(url)
    return app.test_client().get(parts.path, base_url=f"{parts.scheme}://{parts.netloc}", **kw)


# --- file names and the prompt used ------------------------------------------------------------------

def test_generated_images_are_named_after_the_article_and_their_slot(api):
    content_id, ids = new_article(api, "kites-for-beginners", images=(
        ("featured", 0, "A red kite"), ("in_article", 1, "A beach"), ("in_article", 2, "A spool"),
        ("desktop", 0, "A wide sky"), ("mobile", 0, "A tall kite")))
    generate(api, ids)
    names = {(i.image_type, i.position): i.file_name for i in factories.images(ids)}
    assert names == {("featured", 0): "kites-for-beginners-featured.webp",
                     ("in_article", 1): "kites-for-beginners-in-article-1.webp",
                     ("in_article", 2): "kites-for-beginners-in-article-2.webp",
                     ("desktop", 0): "kites-for-beginners-desktop.webp",
                     ("mobile", 0): "kites-for-beginners-mobile.webp"}
    assert [i.generated_prompt for i in factories.images(ids)] == ["A red kite", "A beach", "A spool", "A wide sky",
                                                                   "A tall kite"]
    assert not any(i.out_of_date for i in factories.images(ids))
    api.patch(f"/v1/writer/images/{ids[0]}/", json={"prompt": "A green kite"})
    assert factories.image(ids[0]).out_of_date  # made from the old prompt, which is kept


def test_file_names_are_unique_in_the_account_and_kept_by_a_regeneration(api):
    _, first = new_article(api, "kites")
    _, second = new_article(api, "kites")
    _, third = new_article(api, "kites", images=(("featured", 0, "Another kite"),))
    _, unnamed = new_article(api, "", images=(("featured", 0, "No slug"),))
    for ids in (first, second, third, unnamed):  # one after the other: names go to the first saved
        generate(api, ids)
    assert [i.file_name for i in factories.images(first + second + third)] == [
        "kites-featured.webp", "kites-in-article-1.webp", "kites-featured-2.webp", "kites-in-article-1-2.webp",
        "kites-featured-3.webp"]
    content_id = factories.image(unnamed[0]).content_id
    assert factories.image(unnamed[0]).file_name == f"article-{content_id}-featured.webp"
    generate(api, first[:1], regenerate=True)
    assert factories.image(first[0]).file_name == "kites-featured.webp"  # its own name is not a clash


def test_a_name_taken_between_the_look_and_the_write_is_tried_again(personas, monkeypatch):
    from jobs.ai_core import AICore
    from jobs.engine import new_task_id
    from jobs.functions.generate_images_from_prompts import GenerateImagesFromPromptsFunction

    fn = GenerateImagesFromPromptsFunction()
    with db.connection_context():
        a = factories.account_id("A")
    factories.settings(a, provider="placeholder", model="placeholder-v1", image_format="png")
    _, ids = factories.article(a)
    _, others = factories.article(a)
    with db.connection_context():
        Content.update(slug="sea").execute()
        Images.update(file_name="sea-featured.png").where(Images.id == others[0]).execute()
        real, looks = publishing.free_file_name, []

        def stale_look(*args):  # the first look misses the name another save has just taken
            looks.append(args)
            return "sea-featured.png" if len(looks) == 1 else real(*args)

        monkeypatch.setattr(publishing, "free_file_name", stale_look)
        task_id = new_task_id()
        fn.claim(fn.validate({"ids": ids[:1]}, a), task_id, a)
        assert fn.begin_item(ids[0], task_id, a)
        data = fn.prepare({"ids": ids[:1], "task_id": task_id}, a)
        data = data.for_item(data.items[0])
        response = AICore().generate_image(**fn.build_prompt(data, a).kwargs)
        assert fn.save_output(fn.parse_response(response), data, a)["count"] == 1
    image = factories.image(ids[0])
    assert (image.status, image.file_name, len(looks)) == ("generated", "sea-featured-2.png", 2)
    with db.connection_context():
        assert PublicImage.select().where(PublicImage.image_id == ids[0]).count() == 1  # published once


def test_the_next_free_name_skips_the_taken_ones_of_the_account_only(personas):
    with db.connection_context():
        a, b = factories.account_id("A"), factories.account_id("B")
    content, ids = factories.article(a)
    _, other = factories.article(b)
    with db.connection_context():
        Images.update(file_name="sea-featured.webp").where(Images.id == ids[1]).execute()
        Images.update(file_name="sea-featured-2.webp").where(Images.id == ids[2]).execute()
        Images.update(file_name="sea-featured-3.webp").where(Images.id == other[0]).execute()
        assert publishing.free_file_name(a, ids[0], "sea-featured", "webp") == "sea-featured-3.webp"
        assert publishing.free_file_name(b, other[1], "sea-featured", "webp") == "sea-featured.webp"
        assert publishing.free_file_name(a, ids[1], "sea-featured", "webp") == "sea-featured.webp"  # its own
        content.slug = "Crêpes & Kites / 2024"
        assert publishing.article_slug(content) == "crepes-kites-2024"


# --- public URLs -------------------------------------------------------------------------------------

def test_the_public_url_serves_the_image_to_anyone_with_cache_headers(app, api):
    _, ids = new_article(api, "kites")
    generate(api, ids)
    row = image_json(api, ids[0])
    key = factories.image(ids[0]).public_key
    assert row["public_url"] == f"http://localhost/p/{key}.webp" and len(key) == 32
    answer = anonymous_get(app, row["public_url"])
    assert answer.status_code == 200
    assert answer.data == api.get(row["image_url"]).data  # the stored bytes, as the account sees them
    assert answer.headers["Content-Type"] == "image/webp"
    assert answer.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert "Set-Cookie" not in answer.headers
    assert anonymous_get(app, row["public_url"], headers={"If-None-Match": answer.headers["ETag"]}).status_code == 304
    # Behind the platform's router (HTTPS), the URL says https.
    behind = api.get(f"/v1/writer/images/?content_id={row['content_id']}", headers={"X-Forwarded-Proto": "https"})
    assert behind.get_json()["results"][0]["public_url"].startswith("https://localhost/p/")


def test_a_signed_in_reader_gets_the_same_cacheable_answer_without_a_session_cookie(app, api, personas):
    _, ids = new_article(api, "kites")
    generate(api, ids[:1])
    url = urlsplit(image_json(api, ids[0])["public_url"]).path
    browser = app.test_client()
    login(browser, personas.staff)
    with browser.session_transaction() as session:
        session["seen"] = int(time.time()) - 3600  # due for its refresh, which would set a cookie
    answer = browser.get(url)
    assert answer.status_code == 200 and answer.headers["Cache-Control"].startswith("public")
    assert "Set-Cookie" not in answer.headers
    assert browser.get("/").status_code == 200  # still signed in: the refresh happens on a page


def test_guessed_keys_find_nothing(app, api, personas):
    _, ids = new_article(api, "kites")
    generate(api, ids)
    image = factories.image(ids[0])
    digest = hashlib.sha256(get_storage(load_config()).load(image.file_path).data).hexdigest()
    secret = load_config().secret_key
    assert publishing.public_key(secret, image.account_id, image.id, digest) == image.public_key
    real = publishing.public_path(image.public_key, "webp")
    with db.connection_context():
        b = factories.account_id("B")
    guesses = [
        f"/p/{secrets.token_hex(16)}.webp",
        publishing.public_path(publishing.public_key(secret, image.account_id, ids[1], digest), "webp"),  # another id
        publishing.public_path(publishing.public_key(secret, b, image.id, digest), "webp"),  # another account
        publishing.public_path(publishing.public_key("not-the-secret", image.account_id, image.id, digest), "webp"),
        real.replace(".webp", ".png"), f"/p/{image.public_key.upper()}.webp", real[:-5] + "0.webp",
        f"/p/{image.id}.webp", f"/p/{image.public_key}.webp.webp",
    ]
    client = app.test_client()
    assert client.get(real).status_code == 200
    for guess in guesses:
        assert client.get(guess).status_code == 404, guess


def test_a_regenerated_images_old_url_answers_until_it_expires_then_goes_with_its_file(app, api):
    _, ids = new_article(api, "kites")
    generate(api, ids[:1])
    old = factories.image(ids[0])
    old_url = image_json(api, ids[0])["public_url"]
    api.patch(f"/v1/writer/images/{ids[0]}/", json={"prompt": "A kite at night"})  # new bytes, a new key
    before = utcnow()
    generate(api, ids[:1], regenerate=True)
    new = factories.image(ids[0])
    new_url = image_json(api, ids[0])["public_url"]
    assert new.public_key != old.public_key and new.file_path != old.file_path and new_url != old_url
    assert new.generated_prompt == "A kite at night"
    storage = get_storage(load_config())
    assert anonymous_get(app, new_url).data == storage.load(new.file_path).data
    assert anonymous_get(app, old_url).data == storage.load(old.file_path).data  # kept for pages published with it
    with db.connection_context():
        rows = {r.key: r for r in PublicImage.select().where(PublicImage.image_id == ids[0])}
        assert rows[new.public_key].expires_at is None
        grace = load_config().public_url_grace
        assert before + grace <= rows[old.public_key].expires_at <= utcnow() + grace
        assert publishing.remove_expired() == 0  # nothing has expired yet
        PublicImage.update(expires_at=utcnow() - dt.timedelta(seconds=1)).where(
            PublicImage.key == old.public_key).execute()
    assert anonymous_get(app, old_url).status_code == 404  # expired: gone before the sweep comes by
    with db.connection_context():
        assert publishing.remove_expired() == 1
        assert not PublicImage.select().where(PublicImage.key == old.public_key).exists()
    with pytest.raises(NotStored):
        storage.load(old.file_path)
    assert anonymous_get(app, new_url).status_code == 200 and storage.load(new.file_path).data


def test_an_image_made_before_public_urls_has_none_and_its_old_file_goes_when_it_is_regenerated(app, api):
    _, ids = new_article(api, "kites")
    storage = get_storage(load_config())
    legacy = image_key(factories.image(ids[0]).account_id, ids[0], "0123456789abcdef", "webp")
    storage.save(legacy, b"old bytes", "image/webp")
    with db.connection_context():
        Images.update(status="generated", file_path=legacy, image_format="webp").where(Images.id == ids[0]).execute()
    assert image_json(api, ids[0])["public_url"] is None
    generate(api, ids[:1], regenerate=True)
    assert image_json(api, ids[0])["public_url"].startswith("http://localhost/p/")
    with pytest.raises(NotStored):
        storage.load(legacy)  # no URL pointed at it


def test_images_not_generated_have_no_public_url(api):
    _, ids = new_article(api, "kites")
    assert image_json(api, ids[0])["public_url"] is None


# --- every storage backend ---------------------------------------------------------------------------

@pytest.fixture(params=["files", "database", "s3"])
def backend_app(request, app, tmp_path):
    config = app.config["SERVICE_CONFIG"]
    if request.param == "s3":
        server = request.getfixturevalue("s3_server")
        request.getfixturevalue("s3")  # the bucket, emptied
        config = dataclasses.replace(config, storage_backend="s3", s3_bucket=server.bucket, s3_region=server.region,
                                     s3_endpoint_url=server.endpoint_url, s3_prefix="app")
    else:
        config = dataclasses.replace(config, storage_backend=request.param, media_root=tmp_path / "media")
    app.config["SERVICE_CONFIG"] = config
    return app


def published(app, account, image_id, data: bytes) -> tuple[str, str]:
    """An image stored and published as save_output does it; its public path and file key."""
    config = app.config["SERVICE_CONFIG"]
    digest = hashlib.sha256(data).hexdigest()
    key = image_key(account, image_id, digest, "webp")
    get_storage(config).save(key, data, "image/webp")
    public_key = publishing.public_key(config.secret_key, account, image_id, digest)
    with db.connection_context():
        Images.update(status="generated", file_path=key, image_format="webp", public_key=public_key).where(
            Images.id == image_id).execute()
        publishing.publish(account, image_id, key=public_key, file_path=key, content_type="image/webp",
                           grace=config.public_url_grace)
    return publishing.public_path(public_key, "webp"), key


def test_every_backend_serves_public_urls_and_removes_expired_ones(backend_app, personas):
    with db.connection_context():
        account = factories.account_id("A")
    _, ids = factories.article(account)
    first, first_file = published(backend_app, account, ids[0], b"RIFF-first")
    second, second_file = published(backend_app, account, ids[0], b"RIFF-second")  # regenerated
    client = backend_app.test_client()
    assert (client.get(first).data, client.get(second).data) == (b"RIFF-first", b"RIFF-second")
    api = ApiClient(client, personas.owner)
    listed = api.get(f"/v1/writer/images/?content_id={factories.image(ids[0]).content_id}").get_json()["results"]
    assert listed[0]["public_url"] == f"http://localhost{second}"  # S3 without a public base: the app serves it
    storage = get_storage(backend_app.config["SERVICE_CONFIG"])
    with db.connection_context():
        assert publishing.remove_expired(now=utcnow() + dt.timedelta(days=8), storage=storage) == 1
    assert client.get(first).status_code == 404 and client.get(second).data == b"RIFF-second"
    with pytest.raises(NotStored):
        storage.load(first_file)
    assert storage.load(second_file).data == b"RIFF-second"


def test_a_file_published_again_is_not_removed_with_its_expired_row(backend_app, personas):
    with db.connection_context():
        account = factories.account_id("A")
    _, ids = factories.article(account)
    same, same_file = published(backend_app, account, ids[0], b"RIFF-same")
    published(backend_app, account, ids[0], b"RIFF-other")
    again, _ = published(backend_app, account, ids[0], b"RIFF-same")  # back to the first bytes
    assert again == same
    storage = get_storage(backend_app.config["SERVICE_CONFIG"])
    with db.connection_context():
        assert PublicImage.get(PublicImage.key == same.split("/")[-1].split(".")[0]).expires_at is None
        # The image's current file, even with a row expired by hand, stays.
        PublicImage.update(expires_at=utcnow() - dt.timedelta(hours=1)).execute()
        assert publishing.remove_expired(storage=storage) == 2
    assert storage.load(same_file).data == b"RIFF-same"


def test_the_grace_period_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("PUBLIC_URL_GRACE_HOURS", "2.5")
    assert load_config().public_url_grace == dt.timedelta(hours=2.5)
    monkeypatch.delenv("PUBLIC_URL_GRACE_HOURS")
    assert load_config().public_url_grace == dt.timedelta(days=7)
    for bad in ("soon", "-1", "nan"):
        monkeypatch.setenv("PUBLIC_URL_GRACE_HOURS", bad)
        with pytest.raises(ValueError, match="PUBLIC_URL_GRACE_HOURS"):
            load_config()


# --- the ZIP -----------------------------------------------------------------------------------------

def test_the_zip_holds_the_images_under_their_names_and_a_manifest(api):
    content_id, ids = new_article(api, "kites", images=(
        ("featured", 0, "A red kite"), ("in_article", 1, "A beach"), ("in_article", 2, "Not generated")))
    generate(api, ids[:2])
    api.patch(f"/v1/writer/images/{ids[0]}/", json={"prompt": "Edited after"})
    answer = api.get(f"/v1/writer/content/{content_id}/export.zip")
    assert answer.status_code == 200 and answer.mimetype == "application/zip"
    assert answer.headers["Content-Disposition"] == 'attachment; filename="kites-images.zip"'
    archive = zipfile.ZipFile(io.BytesIO(answer.data))
    assert archive.namelist() == ["kites-featured.webp", "kites-in-article-1.webp", "manifest.json"]
    images = factories.images(ids[:2])
    for image in images:
        assert archive.read(image.file_name) == api.get(image.image_url).data
    manifest = json.loads(archive.read("manifest.json"))
    assert manifest == [
        {"id": i.id, "image_type": i.image_type, "position": i.position, "file_name": i.file_name,
         "alt_text": i.alt_text, "caption": i.caption, "width": i.width, "height": i.height,
         "prompt": prompt, "model": "placeholder-v1", "cost": 0.0}
        for i, prompt in zip(images, ["A red kite", "A beach"], strict=True)]  # the prompt each was made from


def test_another_accounts_exports_answer_like_missing_ones(client, personas):
    with db.connection_context():
        b = factories.account_id("B")
    content, _ = factories.article(b)
    owner = ApiClient(client, personas.owner)
    for suffix in ("html/", "export.zip"):
        theirs = owner.get(f"/v1/writer/content/{content.id}/{suffix}")
        missing = owner.get(f"/v1/writer/content/{content.id + 1000}/{suffix}")
        assert theirs.status_code == missing.status_code == 404 and theirs.get_json() == missing.get_json()
    assert ApiClient(client, personas.outsider).get(f"/v1/writer/content/{content.id}/export.zip").status_code == 200
