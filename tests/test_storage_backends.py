"""Both storage backends against real storage: a temporary folder, and the tests' database."""

import dataclasses
import hashlib
import os

import pytest

from jobs.storage.backends import (
    DatabaseStorage,
    FileStorage,
    InvalidKey,
    NotStored,
    get_storage,
    image_key,
)
from models import ImageBlob, db

KEY = "acct-3/images/17-0123456789abcdef.webp"
DATA = bytes(range(256)) * 64  # every byte value, NULs included
ETAG = hashlib.sha256(DATA).hexdigest()[:32]
BAD_KEYS = ["", "../escape.png", "acct-3/../../escape.png", "/etc/passwd", "acct-3//x.png", "acct-3/./x.png",
            ".hidden.png", "acct-3\\x.png", "acct-3/x.png\x00.txt", "acct 3/x.png", "a" * 301]


@pytest.fixture
def files(tmp_path):
    return FileStorage(tmp_path / "media")


@pytest.fixture
def database_storage(database):
    with db.connection_context():
        yield DatabaseStorage()


@pytest.fixture(params=["files", "database"])
def storage(request, tmp_path, database):
    if request.param == "files":
        yield FileStorage(tmp_path / "media")
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


def test_both_backends_give_the_same_etag_for_the_same_bytes(files, database_storage):
    files.save(KEY, DATA, "image/webp")
    database_storage.save(KEY, DATA, "image/webp")
    assert files.load(KEY).etag == database_storage.load(KEY).etag == ETAG


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


def test_get_storage_names_the_choices_for_an_unknown_backend(service_config):
    with pytest.raises(ValueError, match="STORAGE_BACKEND is 's3'; choose one of: files, database"):
        get_storage(dataclasses.replace(service_config, storage_backend="s3"))


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
