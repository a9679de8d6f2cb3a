"""What only the s3 backend does, against the same local S3 server as the storage suite: the prefix,
its configuration and its errors, the endpoint, one client per process, public URLs, and the app
serving an image kept in the bucket."""

import dataclasses
import hashlib
import json
import os
import urllib.request
from email.message import Message

import pytest
from botocore.exceptions import ClientError

from config import load_config
from jobs.storage.backends import NotStored, S3Storage, get_storage
from models import Images, db
from tests import factories
from tests import test_storage_backends as suite
from tests.conftest import login
from tests.test_storage_backends import DATA, ETAG, KEY
from webapp.media import public_image_url

# The storage suite's fixtures: the session's local S3 server, and its bucket emptied for each test.
s3_server, s3 = suite.s3_server, suite.s3


def raw_get(url: str) -> tuple[int, Message, bytes]:
    """A plain HTTP GET, no boto3: what a browser or a CDN fetching from the bucket would get."""
    with urllib.request.urlopen(url, timeout=10) as answer:  # noqa: S310 - the test's own server
        return answer.status, answer.headers, answer.read()


def test_the_prefix_is_put_in_front_of_every_key(s3, s3_server):
    prefixed = s3_server.storage(prefix="/staging/media/")  # slashes around it are forgiven
    prefixed.save(KEY, DATA, "image/webp")
    assert s3_server.object_names() == [f"staging/media/{KEY}"]
    assert prefixed.load(KEY).data == DATA
    with pytest.raises(NotStored):
        s3.load(KEY)  # the same bucket without the prefix holds nothing under that key
    prefixed.delete(KEY)
    assert s3_server.object_names() == []


def test_two_prefixes_share_a_bucket_without_seeing_each_other(s3, s3_server):
    one, two = s3_server.storage(prefix="one"), s3_server.storage(prefix="two")
    one.save(KEY, b"one", "image/webp")
    two.save(KEY, b"two", "image/webp")
    two.delete(KEY)
    assert one.load(KEY).data == b"one"
    assert s3_server.object_names() == [f"one/{KEY}"]


def test_the_endpoint_url_is_where_the_objects_go(s3, s3_server):
    assert s3.client().meta.endpoint_url == s3_server.endpoint_url
    s3.save(KEY, DATA, "image/webp")
    # Read back over plain HTTP (a presigned URL, no boto3 in the way): the bytes really are on that
    # server, in the bucket, under the key.
    url = s3.client().generate_presigned_url("get_object", Params={"Bucket": s3_server.bucket, "Key": KEY})
    assert url.startswith(f"{s3_server.endpoint_url}/{s3_server.bucket}/{KEY}?")
    status, headers, body = raw_get(url)
    assert (status, body, headers["Content-Type"]) == (200, DATA, "image/webp")
    # Image keys change with their content, so a CDN in front of the bucket may keep them for good.
    assert headers["Cache-Control"] == "public, max-age=31536000, immutable"


def test_the_region_is_the_clients(s3_server):
    assert s3_server.storage().client().meta.region_name == s3_server.region
    other = S3Storage(s3_server.bucket, region="eu-west-1", endpoint_url=s3_server.endpoint_url)
    assert other.client().meta.region_name == "eu-west-1"


def test_a_missing_bucket_is_an_error_not_a_missing_image(s3_server):
    absent = S3Storage("no-such-bucket-here", region=s3_server.region, endpoint_url=s3_server.endpoint_url)
    with pytest.raises(ClientError, match="NoSuchBucket"):
        absent.load(KEY)


def test_the_environment_configures_it(monkeypatch, s3_server):
    monkeypatch.setenv("STORAGE_BACKEND", "s3")
    monkeypatch.setenv("S3_BUCKET", s3_server.bucket)
    monkeypatch.setenv("S3_PREFIX", "prod")
    monkeypatch.setenv("S3_ENDPOINT_URL", s3_server.endpoint_url)
    monkeypatch.setenv("MEDIA_PUBLIC_BASE_URL", "https://cdn.example.test/")
    monkeypatch.delenv("S3_REGION", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-central-1")  # boto3's own variable is the fallback
    config = load_config()
    storage = get_storage(config)
    assert isinstance(storage, S3Storage)
    assert (storage.bucket, storage.prefix, storage.region, storage.endpoint_url, storage.public_base_url) == (
        s3_server.bucket, "prod/", "eu-central-1", s3_server.endpoint_url, "https://cdn.example.test")
    monkeypatch.setenv("S3_REGION", "us-east-1")
    assert get_storage(load_config()).region == "us-east-1"
    # Credentials stay in boto3's chain: the config never holds them, so it cannot print them.
    assert os.environ["AWS_SECRET_ACCESS_KEY"] not in repr(config)


def test_a_missing_bucket_setting_fails_at_get_storage_naming_the_variable(monkeypatch):
    monkeypatch.setenv("STORAGE_BACKEND", "s3")
    monkeypatch.delenv("S3_BUCKET", raising=False)
    with pytest.raises(ValueError, match="STORAGE_BACKEND is 's3' but S3_BUCKET is not set"):
        get_storage(load_config())
    monkeypatch.setenv("S3_BUCKET", "")
    with pytest.raises(ValueError, match="S3_BUCKET is not set"):
        get_storage(load_config())


@pytest.mark.parametrize("option, value, message", [
    ("prefix", "../escape", "S3_PREFIX '../escape' is not a folder-like path"),
    ("prefix", "a//b", "S3_PREFIX"),
    ("endpoint_url", "127.0.0.1:9000", "S3_ENDPOINT_URL '127.0.0.1:9000' is not an http"),
    ("endpoint_url", "ftp://minio.internal", "S3_ENDPOINT_URL"),
    ("public_base_url", "cdn.example.test", "MEDIA_PUBLIC_BASE_URL 'cdn.example.test' is not an http"),
])
def test_odd_settings_are_refused_with_the_variable_to_fix(option, value, message):
    with pytest.raises(ValueError, match=message):
        S3Storage("media", **{option: value})


def test_one_client_per_process_and_a_new_one_after_fork(s3, s3_server):
    assert s3.client() is s3_server.storage().client()  # built once, reused by every S3Storage
    parent_client = id(s3.client())
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child, as an RQ work-horse is: it must not use the parent's connections
        code = 1
        try:
            os.close(read)
            child = s3_server.storage()
            child.save(KEY, DATA, "image/webp")
            os.write(write, b"new" if id(child.client()) != parent_client else b"shared")
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        said = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0 and said == b"new"
    assert s3.load(KEY).data == DATA  # what the child stored, through the parent's own client


def test_public_urls_need_a_public_base_and_include_the_prefix(s3, s3_server):
    assert s3.public_url(KEY) is None  # a private bucket: only the app serves its images
    # The bucket's own public URL as the base (what a CDN in front of it would answer the same).
    public = s3_server.storage(prefix="site", public_base_url=f"{s3_server.endpoint_url}/{s3_server.bucket}/")
    public.save(KEY, DATA, "image/webp")
    # Made public the way a deployment does it: a bucket policy letting anyone read the prefix.
    s3.client().put_bucket_policy(Bucket=s3_server.bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
         "Resource": f"arn:aws:s3:::{s3_server.bucket}/site/*"}]}))
    try:
        url = public.public_url(KEY)
        assert url == f"{s3_server.endpoint_url}/{s3_server.bucket}/site/{KEY}"
        status, _, body = raw_get(url)
    finally:
        s3.client().delete_bucket_policy(Bucket=s3_server.bucket)
    assert (status, body) == (200, DATA)


@pytest.fixture
def s3_app(app, s3, s3_server):
    """The web app with STORAGE_BACKEND=s3 on the local server."""
    app.config["SERVICE_CONFIG"] = dataclasses.replace(
        app.config["SERVICE_CONFIG"], storage_backend="s3", s3_bucket=s3_server.bucket, s3_region=s3_server.region,
        s3_endpoint_url=s3_server.endpoint_url, s3_prefix="app")
    return app


def generated_image(account: int, key: str) -> int:
    _, ids = factories.article(account)
    with db.connection_context():
        Images.update(status="generated", image_format="webp", file_path=key,
                      image_url=f"/media/images/{ids[0]}.webp?v={ETAG[:12]}").where(Images.id == ids[0]).execute()
    return ids[0]


def test_the_app_serves_an_image_kept_in_the_bucket(s3_app, s3_server, personas):
    client = s3_app.test_client()
    image_data = hashlib.sha256(b"image").digest() * 100
    with db.connection_context():
        account = factories.account_id("A")
    image_id = generated_image(account, KEY)
    get_storage(s3_app.config["SERVICE_CONFIG"]).save(KEY, image_data, "image/webp")
    assert s3_server.object_names() == [f"app/{KEY}"]
    login(client, personas.owner)
    response = client.get(f"/media/images/{image_id}.webp?v=abc")
    assert response.status_code == 200 and response.data == image_data
    assert response.content_type == "image/webp"
    etag = hashlib.sha256(image_data).hexdigest()[:32]
    assert response.headers["ETag"] == f'"{etag}"'
    assert client.get(f"/media/images/{image_id}.webp", headers={"If-None-Match": f'"{etag}"'}).status_code == 304
    # Another account's user sees a 404, as for a missing image; so does an image gone from the bucket.
    outsider = s3_app.test_client()
    login(outsider, personas.outsider)
    assert outsider.get(f"/media/images/{image_id}.webp").status_code == 404
    get_storage(s3_app.config["SERVICE_CONFIG"]).delete(KEY)
    assert client.get(f"/media/images/{image_id}.webp").status_code == 404


def test_generated_images_get_a_public_url_only_with_a_public_base(s3_app, personas):
    with db.connection_context():
        account = factories.account_id("A")
    image_id = generated_image(account, KEY)
    image = factories.image(image_id)
    with s3_app.app_context():
        assert public_image_url(image) is None  # no MEDIA_PUBLIC_BASE_URL: served by the app only
        config = s3_app.config["SERVICE_CONFIG"]
        s3_app.config["SERVICE_CONFIG"] = dataclasses.replace(config, media_public_base_url="https://cdn.example.test")
        assert public_image_url(image) == f"https://cdn.example.test/app/{KEY}"
        image.status = "generating"  # a regeneration under way: its old file is not the image any more
        assert public_image_url(image) is None
        image.status = "generated"
        s3_app.config["SERVICE_CONFIG"] = dataclasses.replace(config, storage_backend="files",
                                                              media_public_base_url="https://cdn.example.test")
        assert public_image_url(image) is None  # files and database rows keep being served by the app


def test_the_api_gives_a_generated_images_public_url(s3_app, personas):
    from tests.api_helpers import ApiClient

    with db.connection_context():
        account = factories.account_id("A")
    image_id = generated_image(account, KEY)
    api = ApiClient(s3_app.test_client(), personas.owner)

    def row():
        listing = api.get(f"/v1/writer/images/?content_id={factories.image(image_id).content_id}").get_json()
        return next(r for r in listing["results"] if r["id"] == image_id)

    assert row()["public_url"] is None  # a private bucket
    config = s3_app.config["SERVICE_CONFIG"]
    s3_app.config["SERVICE_CONFIG"] = dataclasses.replace(config, media_public_base_url="https://cdn.example.test")
    assert row()["public_url"] == f"https://cdn.example.test/app/{KEY}"
