"""Every storage backend against real storage: a temporary folder, the tests' database, and a real
S3-compatible server (moto's) listening on 127.0.0.1 for the session."""

import contextlib
import dataclasses
import hashlib
import os
import threading

import pytest

from jobs.storage.backends import (
    DatabaseStorage,
    FileStorage,
    InvalidKey,
    NotStored,
    S3Storage,
    answer_key,
    get_storage,
    image_key,
)
from models import ImageBlob, db

KEY = "acct-3/images/17-0123456789abcdef.webp"
DATA = bytes(range(256)) * 64  # every byte value, NULs included
ETAG = hashlib.sha256(DATA).hexdigest()[:32]
BAD_KEYS = ["", "../escape.png", "acct-3/../../escape.png", "/etc/passwd", "acct-3//x.png", "acct-3/./x.png",
            ".hidden.png", "acct-3\\x.png", "acct-3/x.png\x00.txt", "acct 3/x.png", "a" * 301]


S3_BUCKET = "imggen-test-media"
S3_REGION = "us-east-1"


@dataclasses.dataclass(frozen=True)
class S3Server:
    endpoint_url: str
    bucket: str
    region: str

    def storage(self, **options) -> S3Storage:
        return S3Storage(self.bucket, region=self.region, endpoint_url=self.endpoint_url, **options)

    def object_names(self) -> list[str]:
        listing = self.storage().client().list_objects_v2(Bucket=self.bucket)
        return sorted(item["Key"] for item in listing.get("Contents", []))

    def empty(self) -> None:
        client = self.storage().client()
        for name in self.object_names():
            client.delete_object(Bucket=self.bucket, Key=name)


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server in a thread on 127.0.0.1, on a port the OS picks, with the session's bucket.
    boto3 talks to it over HTTP exactly as to a real store. A server that cannot start fails the tests."""
    from moto.server import ThreadedMotoServer

    with pytest.MonkeyPatch.context() as env:
        # Any credentials do for the local server; pinned so the machine's own AWS settings never apply.
        env.setenv("AWS_ACCESS_KEY_ID", "test-access-key")
        env.setenv("AWS_SECRET_ACCESS_KEY", "test-secret-key")
        env.delenv("AWS_SESSION_TOKEN", raising=False)
        env.delenv("AWS_PROFILE", raising=False)
        env.setenv("AWS_CONFIG_FILE", os.devnull)
        env.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        # start() waits without a timeout for a server thread that may have died: wait for it here.
        starting = threading.Thread(target=server.start, daemon=True)
        starting.start()
        starting.join(timeout=30)
        if starting.is_alive():
            pytest.fail("the local S3 server (moto) did not start within 30 s")
        host, port = server.get_host_and_port()
        running = S3Server(endpoint_url=f"http://{host}:{port}", bucket=S3_BUCKET, region=S3_REGION)
        client = running.storage().client()
        # Another module's copy of this fixture may have made it already: moto's servers share one state.
        with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
            client.create_bucket(Bucket=S3_BUCKET)
        yield running
        server.stop()


@pytest.fixture
def s3(s3_server):
    s3_server.empty()  # one bucket for the session: each test starts with it empty
    return s3_server.storage()


@pytest.fixture
def files(tmp_path):
    return FileStorage(tmp_path / "media")


@pytest.fixture
def database_storage(database):
    with db.connection_context():
        yield DatabaseStorage()


@pytest.fixture(params=["files", "database", "s3"])
def storage(request, tmp_path, database):
    if request.param == "files":
        yield FileStorage(tmp_path / "media")
    elif request.param == "s3":
        yield request.getfixturevalue("s3")
    else:
        with db.connection_context():
            yield DatabaseStorage()


def test_it_loads_what_it_saved(storage):
    storage.save(KEY, DATA, "image/webp")
    stored = storage.load(KEY)
    assert (stored.data, stored.content_type, stored.etag) == (DATA, "image/webp", ETAG)


def test_a_second_save_replaces_the_first(storage):
    storage.save(KEY, b"old bytes", "image/webp")
    storage.save(KEY, DATA, "image/webp")
    stored = storage.load(KEY)
    assert stored.data == DATA and stored.etag == ETAG


def test_the_etag_changes_with_the_bytes(storage):
    storage.save(KEY, b"one", "image/webp")
    first = storage.load(KEY).etag
    storage.save(KEY, b"two", "image/webp")
    assert storage.load(KEY).etag != first


def test_it_deletes_and_a_missing_key_is_not_stored(storage):
    storage.save(KEY, DATA, "image/webp")
    storage.delete(KEY)
    with pytest.raises(NotStored):
        storage.load(KEY)
    storage.delete(KEY)  # deleting what is gone is fine


@pytest.mark.parametrize("key", BAD_KEYS)
def test_it_refuses_keys_that_could_escape_the_store(storage, key):
    for call in (lambda: storage.save(key, DATA, "image/png"), lambda: storage.load(key),
                 lambda: storage.delete(key)):
        with pytest.raises(InvalidKey):
            call()


def test_every_backend_gives_the_same_etag_for_the_same_bytes(files, database_storage, s3):
    for backend in (files, database_storage, s3):
        backend.save(KEY, DATA, "image/webp")
    assert files.load(KEY).etag == database_storage.load(KEY).etag == s3.load(KEY).etag == ETAG


def test_a_staged_answer_keeps_its_bytes_as_an_octet_stream(storage):
    key = answer_key(3, 17, "0123456789abcdef0123")
    storage.save(key, DATA, "application/octet-stream")
    stored = storage.load(key)
    assert (stored.data, stored.content_type, stored.etag) == (DATA, "application/octet-stream", ETAG)


def test_an_empty_object_is_stored_and_read_back(storage):
    storage.save(KEY, b"", "image/webp")
    assert storage.load(KEY).data == b""


def test_files_land_under_the_root_and_leave_no_temporary_files(files, tmp_path):
    files.save(KEY, DATA, "image/webp")
    files.save(KEY, b"newer", "image/webp")
    folder = tmp_path / "media" / "acct-3" / "images"
    assert os.listdir(folder) == ["17-0123456789abcdef.webp"]
    assert (folder / "17-0123456789abcdef.webp").read_bytes() == b"newer"


def test_a_failed_file_save_keeps_the_old_file_and_leaves_no_temporary_file(files, tmp_path):
    files.save("acct-3/images/taken.png", b"old", "image/png")
    folder = tmp_path / "media" / "acct-3" / "images"
    (folder / "dir.png").mkdir()  # os.replace cannot put a file over a folder
    with pytest.raises(OSError):
        files.save("acct-3/images/dir.png", DATA, "image/png")
    assert sorted(os.listdir(folder)) == ["dir.png", "taken.png"]
    assert files.load("acct-3/images/taken.png").data == b"old"


def test_files_refuse_a_symlink_out_of_the_root(files, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "media").mkdir()
    (tmp_path / "media" / "acct-3").symlink_to(outside)
    with pytest.raises(InvalidKey, match="outside the media folder"):
        files.save("acct-3/x.png", DATA, "image/png")
    assert list(outside.iterdir()) == []


def test_files_take_the_content_type_from_the_extension(files):
    for key, content_type in [("a/x.png", "image/png"), ("a/x.jpg", "image/jpeg"), ("a/x.webp", "image/webp")]:
        files.save(key, DATA, content_type)
        assert files.load(key).content_type == content_type
    with pytest.raises(ValueError, match="does not match the key's extension"):
        files.save("a/y.png", DATA, "image/webp")


def test_the_database_keeps_one_row_per_key(database_storage):
    database_storage.save(KEY, b"old", "image/webp")
    database_storage.save(KEY, DATA, "image/webp")
    other = "acct-3/images/18-0123456789abcdef.png"
    database_storage.save(other, b"other", "image/png")
    assert ImageBlob.select().where(ImageBlob.key == KEY).count() == 1
    assert ImageBlob.select().where(ImageBlob.key.in_([KEY, other])).count() == 2
    assert database_storage.load(other).data == b"other"


def test_get_storage_picks_the_configured_backend(service_config, tmp_path):
    files = get_storage(dataclasses.replace(service_config, storage_backend="files", media_root=tmp_path))
    assert isinstance(files, FileStorage) and files.root == tmp_path.resolve()
    assert isinstance(get_storage(dataclasses.replace(service_config, storage_backend="database")), DatabaseStorage)
    s3 = get_storage(dataclasses.replace(service_config, storage_backend="s3", s3_bucket="media", s3_prefix="prod",
                                         s3_region="eu-west-1", s3_endpoint_url="https://s3.example.test"))
    assert isinstance(s3, S3Storage)
    assert (s3.bucket, s3.prefix, s3.region, s3.endpoint_url) == ("media", "prod/", "eu-west-1",
                                                                  "https://s3.example.test")


def test_get_storage_names_the_choices_for_an_unknown_backend(service_config):
    with pytest.raises(ValueError, match="STORAGE_BACKEND is 'gcs'; choose one of: files, database, s3"):
        get_storage(dataclasses.replace(service_config, storage_backend="gcs"))


def test_image_keys_change_with_the_content():
    digest = hashlib.sha256(b"one").hexdigest()
    key = image_key(3, 17, digest, "webp")
    assert key == f"acct-3/images/17-{digest[:16]}.webp"
    assert image_key(3, 17, hashlib.sha256(b"two").hexdigest(), ".webp") != key


@pytest.mark.parametrize("digest, extension", [("not-hex-at-all-!!", "png"), ("abc", "png"),
                                               ("0123456789abcdef", "exe"), ("0123456789abcdef", "png/../x")])
def test_image_keys_refuse_odd_digests_and_extensions(digest, extension):
    with pytest.raises(ValueError):
        image_key(3, 17, digest, extension)
