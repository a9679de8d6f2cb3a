"""Redis and the RQ queue, from REDIS_URL or the embedded Redis."""

import os
from functools import lru_cache

import redis
from rq import Queue

from config import load_config
from jobs import embedded_redis


def redis_url(config=None, *, start: bool = True) -> str:
    """REDIS_URL, or the embedded Redis' socket (started unless `start` is false)."""
    config = config or load_config()
    if config.redis_url:
        return config.redis_url
    if start:
        _ensure_embedded(config.instance_path)
    return embedded_redis.socket_url(config.embedded_redis_socket)


@lru_cache(maxsize=8)
def _ensure_embedded(instance_path):
    # Once per process: the lock and the ping cost a few milliseconds we need not pay per job.
    embedded_redis.ensure_running(instance_path)


@lru_cache(maxsize=8)
def _connection(url: str) -> redis.Redis:
    options = {}
    if url.startswith("rediss://") and os.environ.get("REDIS_TLS_VERIFY", "") != "1":
        # Heroku Redis serves TLS with a self-signed certificate (its docs say to skip verification);
        # REDIS_TLS_VERIFY=1 checks it, for a provider whose certificate is signed.
        options["ssl_cert_reqs"] = None
    return redis.Redis.from_url(url, health_check_interval=30, **options)


def get_redis(config=None) -> redis.Redis:
    return _connection(redis_url(config))


def get_queue(config=None) -> Queue:
    config = config or load_config()
    return Queue(config.queue_name, connection=get_redis(config))


def redis_label(url: str) -> str:
    return "embedded Redis" if url.startswith("unix://") else url.split("@")[-1]
