"""`make run`: the whole service on one machine with the embedded defaults.

Starts the embedded Redis (unless REDIS_URL is set), prepares the database and the demo data,
then runs the workers and the web server until Ctrl-C, and leaves no process behind.
"""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from config import load_config  # noqa: E402
from jobs import embedded_redis  # noqa: E402

# Work processes of the one worker (a pool, as one dyno runs it): enough for the default C = 1 and a
# second account at once.
WORKERS = int(os.environ.get("WORKERS", "4"))


def free_port(preferred: int) -> int:
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise RuntimeError("no free port")


def flask(*args):
    subprocess.run([sys.executable, "-m", "flask", "--app", "webapp", *args], cwd=ROOT, check=True)


# Children run in their own sessions, so a terminal's Ctrl-C reaches only this script, which then
# stops them in order: web and workers first (a warm shutdown lets a running image finish), Redis last.
def stop(processes):
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 15
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        end_group(process)


def end_group(process) -> None:
    """End whatever is left of a child's process group (each child runs in a session of its own)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def start(command) -> subprocess.Popen:
    return subprocess.Popen(command, cwd=ROOT, start_new_session=True)


def main():
    config = load_config()
    processes = []
    redis_process = None
    if not config.redis_url:
        redis_process = embedded_redis.ensure_running(config.instance_path)
    try:
        flask("init-db")
        print("Demo logins:")
        flask("seed-demo")
        port = free_port(int(os.environ.get("PORT", "5000")))
        os.environ["WORKER_CONCURRENCY"] = str(WORKERS)
        commands = [[sys.executable, "worker.py", "--name", f"dev-{os.getpid()}"]]
        commands.append([str(Path(sys.executable).parent / "gunicorn"), "--bind", f"127.0.0.1:{port}",
                         "--workers", "2", "--threads", "4", "--graceful-timeout", "5", "webapp:create_app()"])
        processes[:] = [start(command) for command in commands]
        time.sleep(1.5)
        print(f"\n  Open http://127.0.0.1:{port}/ and log in with a demo login above.  Ctrl-C stops.\n",
              flush=True)
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt))
        restarts = {}
        while True:
            time.sleep(0.5)
            for n, process in enumerate(processes):
                if process.poll() is None:
                    continue
                # One child that exits (a lost Redis, a crash) is started again rather than taking the
                # whole service down; one that keeps exiting is given more time between tries.
                end_group(process)  # what it forked (RQ's scheduler) goes with it
                restarts[n] = restarts.get(n, 0) + 1
                wait = min(30, 2 ** (restarts[n] - 1))
                print(f"{' '.join(Path(c).name for c in commands[n][:2])} exited with {process.returncode}; "
                      f"starting it again in {wait} s", file=sys.stderr, flush=True)
                time.sleep(wait)
                processes[n] = start(commands[n])
    except KeyboardInterrupt:
        print("\nStopping…", flush=True)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not leave orphans
        stop(processes)
        if redis_process is not None:
            stop([redis_process])


if __name__ == "__main__":
    main()
