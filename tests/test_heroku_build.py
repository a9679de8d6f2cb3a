"""A Heroku build ships htmx: app.json asks for the Node.js buildpack before the Python one, package.json's
`build` script puts htmx where the app serves it (`make install` runs the same script), and the app
refuses to start without it instead of serving pages where nothing works.

The reproduction test builds a clean clone of this repository as the two buildpacks do — `npm ci` and the
build script, then a virtualenv with `pip install -r requirements.txt` — runs the Procfile's `release`,
`web` and `worker` with only DATABASE_URL, REDIS_URL and SECRET_KEY set, and watches an image task's
progress panel update live in Chromium. It uses the machine's PostgreSQL and Redis (its own database,
Redis db 14): if they cannot be reached it fails, never skips.
"""

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import psycopg2
import pytest
import redis
import requests
from flask import Flask

from tests.browser_fixtures import ARTIFACTS, logged_in_page
from tests.conftest import ROOT, _children, procfile, wait_for
from webapp import assets

pytestmark = [pytest.mark.browser, pytest.mark.worker]

PG_HOST, PG_PORT = "127.0.0.1", 5432
DATABASE = f"heroku_build_test_{os.getpid()}"  # its own, whoever else runs
REDIS_URL = "redis://127.0.0.1:6379/14"  # a db no other test uses; flushed before and after
HTMX_PATH = "/static/vendor/htmx.min.js"
NPM = ["npm", "--no-audit", "--no-fund", "--no-update-notifier"]


# --- What Heroku reads ----------------------------------------------------------------------------------------

def test_app_json_builds_node_then_python_runs_web_and_worker_with_postgres_redis_and_a_generated_secret():
    app = json.loads((ROOT / "app.json").read_text())
    # Node first: its build script must have run before the Python buildpack (and the release phase) sees
    # the slug; the last buildpack is the one whose default process types Heroku uses.
    assert [pack["url"] for pack in app["buildpacks"]] == ["heroku/nodejs", "heroku/python"]
    formation = app["formation"]
    assert {name: spec["quantity"] for name, spec in formation.items()} == {"web": 1, "worker": 1}
    assert all(spec["size"].startswith("standard-") for spec in formation.values())
    assert set(formation) <= set(procfile()), "every formation entry must be a Procfile process type"
    plans = [addon["plan"] if isinstance(addon, dict) else addon for addon in app["addons"]]
    assert sorted(plan.split(":")[0] for plan in plans) == ["heroku-postgresql", "heroku-redis"]
    assert app["env"]["SECRET_KEY"]["generator"] == "secret"


def test_the_build_script_puts_htmx_where_the_pages_load_it_and_make_install_runs_that_script():
    scripts = json.loads((ROOT / "package.json").read_text())["scripts"]
    # The Node.js buildpack runs heroku-postbuild instead of build when both exist: one script for both.
    assert "heroku-postbuild" not in scripts
    base = (ROOT / "templates" / "base.html").read_text()
    for name in assets.REQUIRED:
        assert f"webapp/static/{name}" in scripts["build"]
        assert f"url_for('static', filename='{name}')" in base
    dry_run = subprocess.run(["make", "-n", "-B", "install"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert dry_run.returncode == 0, dry_run.stderr
    steps = [line.strip() for line in dry_run.stdout.splitlines()]
    assert any(step.startswith("npm ci") for step in steps), steps
    assert any(step.startswith("npm run build") for step in steps), steps
    assert not any("node_modules/" in step for step in steps), "copying is the build script's job alone"


# --- The app refuses to start without its assets ---------------------------------------------------------------

def test_check_assets_names_the_missing_file_and_the_command_that_builds_it(tmp_path):
    static = tmp_path / "static"
    app = Flask("probe", static_folder=str(static))
    with pytest.raises(assets.MissingAssets) as missing:
        assets.check_assets(app)
    message = str(missing.value)
    assert str(static / "vendor" / "htmx.min.js") in message
    assert "npm ci && npm run build" in message and "make install" in message

    (static / "vendor").mkdir(parents=True)
    (static / "vendor" / "htmx.min.js").write_bytes(b"")  # a copy cut short
    with pytest.raises(assets.MissingAssets):
        assets.check_assets(app)
    (static / "vendor" / "htmx.min.js").write_text("/* htmx */")
    assets.check_assets(app)


def test_create_app_refuses_to_start_in_a_checkout_until_the_build_script_has_run(tmp_path):
    """A copy of what a checkout holds (tracked and new files, nothing .gitignore'd — so no htmx), not the
    real static folder, which the other tests are using."""
    checkout = tmp_path / "checkout"
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (checkout / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, checkout / name)
    assert not (checkout / "webapp" / "static" / "vendor").exists()
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "INSTANCE_PATH": str(tmp_path / "instance"),
           "SECRET_KEY": "assets-test", "REDIS_URL": REDIS_URL}
    start = [sys.executable, "-c", "from webapp import create_app; create_app()"]

    refused = subprocess.run(start, cwd=checkout, env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0, "create_app() started without htmx"
    assert "MissingAssets" in refused.stderr, refused.stderr[-3000:]
    assert "vendor/htmx.min.js" in refused.stderr and "npm ci && npm run build" in refused.stderr

    (checkout / "node_modules").symlink_to(ROOT / "node_modules")  # what `npm ci` installed
    built = subprocess.run([*NPM, "run", "build", "--silent"], cwd=checkout, capture_output=True, text=True,
                           timeout=60)
    assert built.returncode == 0, built.stderr
    started = subprocess.run(start, cwd=checkout, env=env, capture_output=True, text=True, timeout=60)
    assert started.returncode == 0, started.stderr[-3000:]


# --- The buildpacks' steps on a clean clone ----------------------------------------------------------------------

def _run(command, cwd, env, timeout, label):
    started = time.monotonic()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{label} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    print(f"{label}: {time.monotonic() - started:.1f} s")  # shown with pytest -s
    return done.stdout


def _procfile_of(root: Path) -> dict:
    lines = (root / "Procfile").read_text().splitlines()
    return dict((name.strip(), command.strip()) for name, command in
                (line.split(":", 1) for line in lines if line.strip() and not line.startswith("#")))


class Dyno:
    """One Procfile process, as Heroku starts it: `bash -c` on the slug, in a process group of its own."""

    def __init__(self, name, command, cwd, env, logs: Path):
        self.name = name
        self.log = logs / f"{name}.log"
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(["bash", "-c", "exec " + command], cwd=cwd, env=env, stdout=out,
                                            stderr=subprocess.STDOUT, start_new_session=True)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self):
        """SIGTERM, as Heroku stops a dyno, then SIGKILL for whatever is left — RQ's work-horses included,
        which run in process groups of their own."""
        children = _children(self.process.pid) if self.process.poll() is None else []
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=20)
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)


@pytest.fixture
def heroku_services():
    """The add-ons: a database of this test's own and an empty Redis db, gone again afterwards."""
    admin = psycopg2.connect(host=PG_HOST, port=PG_PORT, user="postgres", dbname="postgres", connect_timeout=5)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        cursor.execute(f'CREATE DATABASE "{DATABASE}"')
    store = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=5)
    store.flushdb()
    # postgres:// as Heroku hands it out.
    yield {"DATABASE_URL": f"postgres://postgres@{PG_HOST}:{PG_PORT}/{DATABASE}", "REDIS_URL": REDIS_URL}
    store.flushdb()
    store.close()
    with admin.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
    admin.close()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_clean_clone_built_as_heroku_does_serves_htmx_and_shows_live_progress(tmp_path, heroku_services,
                                                                               chromium):
    if isinstance(chromium, Exception):
        pytest.fail(f"Chromium could not be launched: {chromium}")
    repo = Path(_run(["git", "rev-parse", "--show-toplevel"], ROOT, None, 30, "git").strip())
    assert repo == ROOT
    slug = tmp_path / "slug"
    _run(["git", "clone", "--quiet", str(repo), str(slug)], tmp_path, None, 120, "git clone")
    assert not (slug / "webapp" / "static" / "vendor").exists() and not (slug / "node_modules").exists()

    # heroku/nodejs: `npm ci` (production: no dev dependencies), then `heroku-postbuild`, or else `build`.
    build_env = {**os.environ, "NODE_ENV": "production"}
    scripts = json.loads((slug / "package.json").read_text()).get("scripts", {})
    build_script = "heroku-postbuild" if "heroku-postbuild" in scripts else "build"
    _run([*NPM, "ci"], slug, build_env, 300, "npm ci")
    _run([*NPM, "run", build_script], slug, build_env, 120, f"npm run {build_script}")
    # heroku/python: the pinned requirements into a fresh environment (pip's cache, when there is one).
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], tmp_path, None, 120, "venv")
    _run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
          "-r", "requirements.txt"], slug, os.environ, 900, "pip install -r requirements.txt")

    port = _free_port()
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path / "home"),
           "SECRET_KEY": secrets.token_hex(32), **heroku_services}
    (tmp_path / "home").mkdir()
    lines = _procfile_of(slug)
    _run(["bash", "-c", lines["release"]], slug, env, 180, "release")

    dynos = []
    try:
        dynos += [Dyno("web", lines["web"], slug, {**env, "PORT": str(port)}, tmp_path),
                  Dyno("worker", lines["worker"], slug, env, tmp_path)]
        base = f"http://127.0.0.1:{port}"

        def serving():
            for dyno in dynos:
                assert dyno.process.poll() is None, f"{dyno.name} exited:\n{dyno.output()[-3000:]}"
            with contextlib.suppress(requests.RequestException):
                return requests.get(f"{base}/healthz", timeout=2).status_code == 200
            return False

        wait_for(serving, timeout=60, interval=0.2, message="the web dyno to answer /healthz")
        served = requests.get(base + HTMX_PATH, timeout=10)
        assert served.status_code == 200
        assert "javascript" in served.headers["Content-Type"]
        assert served.content == (slug / "node_modules" / "htmx.org" / "dist" / "htmx.min.js").read_bytes()

        email, password = "manager@heroku.test", "a long heroku password"
        flask = ["flask", "--app", "webapp"]
        _run([*flask, "create-user", email, "--password", password, "--role", "manager"], slug, env, 60,
             "create-user")
        token = _run([*flask, "create-token", email], slug, env, 60, "create-token").strip().splitlines()[-1]
        api = requests.Session()
        api.headers["Authorization"] = f"Bearer {token}"
        saved = api.put(f"{base}/v1/system/settings/integrations/image_generation/", timeout=10, json={
            "provider": "placeholder", "model": "placeholder-v1", "max_in_article_images": 5,
            "desktop_enabled": True, "mobile_enabled": True})
        assert saved.status_code == 200, saved.text
        # Eight images, one worker: enough for the panel to change several times before it ends.
        prompts = [("featured", 0, "A lighthouse at dusk"), ("desktop", 0, "A wide harbour panorama"),
                   ("mobile", 0, "A tall cliff with a path")]
        prompts += [("in_article", n, p) for n, p in enumerate(
            ["Gulls over waves", "A sandy path", "Fishing boats", "A beach café", "Tide pools"], start=1)]
        created = api.post(f"{base}/v1/writer/content/", timeout=10, json={
            "title": "A day at the sea",
            "images": [{"image_type": t, "position": n, "prompt": p} for t, n, p in prompts]})
        assert created.status_code == 201, created.text
        content_id = created.json()["id"]

        context, page = logged_in_page(chromium, base, SimpleNamespace(email=email), password)
        try:
            _watch_generation(page, content_id)
        finally:
            with contextlib.suppress(Exception):
                page.screenshot(path=str(ARTIFACTS / "heroku-last-page.png"), full_page=True, animations="disabled")
            context.close()
    finally:
        for dyno in dynos:
            dyno.stop()
            print(f"--- {dyno.name} (last lines) ---", dyno.output()[-2000:], sep="\n")  # shown when it fails

    # The same slug without htmx: the release fails (so Heroku never deploys it) and web refuses to start.
    (slug / "webapp" / "static" / "vendor" / "htmx.min.js").unlink()
    release = subprocess.run(["bash", "-c", lines["release"]], cwd=slug, env=env, capture_output=True, text=True,
                             timeout=120)
    assert release.returncode != 0 and "npm ci && npm run build" in release.stderr, release.stderr[-3000:]
    web = Dyno("web-without-htmx", lines["web"], slug, {**env, "PORT": str(_free_port())}, tmp_path)
    try:
        web.process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"web kept running without htmx:\n{web.output()[-3000:]}")
    finally:
        web.stop()
    assert web.process.returncode != 0
    assert "Front-end assets missing" in web.output() and "npm ci && npm run build" in web.output()


def _watch_generation(page, content_id):
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto("/writer/images")
    assert page.evaluate("typeof window.htmx") == "object", "htmx did not load"
    scripts = page.eval_on_selector_all("script[src]", "s => s.map(x => new URL(x.src).pathname)")
    assert HTMX_PATH in scripts, scripts
    served = page.request.get(HTMX_PATH)
    assert served.status == 200 and "javascript" in served.headers["content-type"]
    # Each swap of the panel records what it showed; the marker would vanish with a full page load.
    page.evaluate("""() => { window.__noReload = true; window.__seen = [];
        document.body.addEventListener('htmx:afterSettle', () => {
            const panel = document.querySelector('#progress[data-task-id]');
            if (panel) window.__seen.push(panel.querySelector('.progress-message strong').textContent + ' ' +
                [...panel.querySelectorAll('.progress-row')].map(r => r.dataset.status).join(','));
        }); }""")
    page.locator(f"#generate-{content_id}").click()
    panel = page.locator("#progress[data-task-id]")
    panel.wait_for()
    assert panel.get_attribute("hx-trigger") == "every 1s"
    page.screenshot(path=str(ARTIFACTS / "heroku-progress-started.png"), animations="disabled")
    page.wait_for_selector("#progress .progress-row[data-status=generated] img")
    page.screenshot(path=str(ARTIFACTS / "heroku-progress-mid-run.png"), animations="disabled")

    page.wait_for_selector("#progress .final", timeout=120_000)
    assert page.locator("#progress .final").inner_text() == "8 images generated successfully"
    assert page.locator("#progress").get_attribute("hx-trigger") is None  # finished: it stopped polling
    page.screenshot(path=str(ARTIFACTS / "heroku-progress-finished.png"), animations="disabled")
    seen = page.evaluate("window.__seen")
    print("panel swaps:", *seen, sep="\n  ")  # shown with pytest -s
    percents = [int(re.match(r"(\d+)%", s).group(1)) for s in seen]
    # Swapped in place by its polls, not reloaded: the panel showed the task part-way, then the end.
    assert len(seen) >= 2 and percents[0] < 100 and percents[-1] == 100, seen
    assert set(seen[0].split(" ", 1)[1].split(",")) - {"generated"}, seen
    assert page.evaluate("window.__noReload") is True
    assert not errors, f"JavaScript errors on the page: {errors}"
