"""Provider keys: encrypted at rest, never shown, logged, queued or leaked in errors; rotatable."""

import contextlib
import zlib

import pytest
from cryptography.fernet import Fernet

from jobs import image_settings
from models import ALL_MODELS, IntegrationSettings, db
from secret_box import SecretBox
from tests import ledger
from tests.api_helpers import SETTINGS, ApiClient
from tests.conftest import login
from tests.flow import generate, new_article, progress, wait_done

SECRET = "sk-canary-secret-Zq81xW"


def _redis_dump(redis_conn) -> bytes:
    """Every value in Redis, decompressed where RQ compressed it."""
    chunks = []
    for key in redis_conn.scan_iter("*"):
        kind = redis_conn.type(key)
        if kind == b"string":
            values = [redis_conn.get(key)]
        elif kind == b"hash":
            values = list(redis_conn.hgetall(key).values())
        elif kind == b"list":
            values = redis_conn.lrange(key, 0, -1)
        elif kind in (b"set", b"zset"):
            values = list(redis_conn.zrange(key, 0, -1) if kind == b"zset" else redis_conn.smembers(key))
        elif kind == b"stream":
            values = [v for _, fields in redis_conn.xrange(key) for v in fields.values()]
        else:
            values = []
        for value in values:
            chunks.append(value)
            with contextlib.suppress(zlib.error, TypeError):  # not everything is compressed
                chunks.append(zlib.decompress(value))
    return b"\n".join(chunks)


def _database_dump() -> str:
    with db.connection_context():
        return "\n".join(str(list(model.select().tuples())) for model in ALL_MODELS)


@pytest.mark.worker
def test_a_rejected_key_never_appears_anywhere(client, personas, worker, fake_openai, redis_conn):
    api = ApiClient(client, personas.owner)
    api.put(SETTINGS, json={"provider": "openai", "model": "gpt-image-2", "api_key": SECRET,
                            "base_url": fake_openai.base_url})
    fake_openai.set_fault("unauthorized")
    ids = new_article()
    task_id = generate(api, ids)
    final = wait_done(api, task_id)
    ledger.fault("provider 401 with a canary key")
    assert final["totals"]["failed"] == 3
    assert fake_openai.calls and all(c.headers.get("Authorization") == f"Bearer {SECRET}" for c in fake_openai.calls)
    assert all(SECRET not in str(c.json) for c in fake_openai.calls)  # only in the header

    seen = [str(final), str(progress(api, task_id)), api.get(SETTINGS).get_data(as_text=True),
            api.get("/v1/writer/images/").get_data(as_text=True)]
    page_client = client.application.test_client()
    login(page_client, personas.owner)
    for url in ("/", "/writer/images", "/settings/integrations/image-generation"):
        seen.append(page_client.get(url).get_data(as_text=True))
    admin = client.application.test_client()
    login(admin, personas.admin)
    for job_id in [task_id, f"{task_id}-item-{ids[0]}", f"{task_id}-done"]:
        seen.append(admin.get(f"/rq/0/data/job/{job_id}.json").get_data(as_text=True))
    seen.append(worker.output())
    assert all(SECRET not in text for text in seen)
    assert SECRET.encode() not in _redis_dump(redis_conn)
    assert SECRET not in _database_dump()
    with db.connection_context():
        row = IntegrationSettings.get()
    assert image_settings.secret_box().decrypt(row.api_key_encrypted) == SECRET  # ciphertext of the key


def test_rotation_keeps_old_keys_readable_and_reencrypts_them(personas, runner, monkeypatch):
    old_box = image_settings.secret_box()
    with db.connection_context():
        a = IntegrationSettings.create(account=personas.owner.account_id, config={"provider": "openai"},
                                       api_key_encrypted=old_box.encrypt(SECRET), api_key_last4=SECRET[-4:])
    from config import load_config

    old_keys = load_config().encryption_keys
    new_key = Fernet.generate_key().decode()
    monkeypatch.setenv("ENCRYPTION_KEYS", ",".join([new_key, *old_keys]))
    assert image_settings.secret_box().decrypt(a.api_key_encrypted) == SECRET  # old ciphertext still reads
    result = runner.invoke(args=["rotate-keys"])
    assert result.exit_code == 0 and "1 stored API key" in result.output
    with db.connection_context():
        rotated = IntegrationSettings.get_by_id(a.id).api_key_encrypted
    assert rotated != a.api_key_encrypted
    assert SecretBox([new_key]).decrypt(rotated) == SECRET  # the new key alone now suffices
