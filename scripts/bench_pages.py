"""How fast the staff pages answer with a thousand articles: `python scripts/bench_pages.py`.

Seeds a throwaway SQLite database (1,000 articles × 6 images) in a temporary instance folder, then
times, through the Flask test client, the progress fragment of a 6-image task (Redis through the
repo's own connection code: REDIS_URL, or an embedded Redis in the temporary folder) and the Images
page. Prints p50/p95 and the queries per request. Not a test: numbers depend on the machine.
"""

import argparse
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
WORK = Path(tempfile.mkdtemp(prefix="bench-pages-"))
# Before any app module reads the environment: everything lives in the throwaway folder.
os.environ["INSTANCE_PATH"] = str(WORK / "instance")
os.environ["DATABASE_URL"] = f"sqlite:///{WORK / 'bench.sqlite3'}"
os.environ["MEDIA_ROOT"] = str(WORK / "media")
os.environ.pop("STORAGE_BACKEND", None)

from rq.job import Job  # noqa: E402

import schema  # noqa: E402
from config import load_config  # noqa: E402
from jobs import image_settings  # noqa: E402
from jobs.connection import get_redis  # noqa: E402
from jobs.engine import item_job_id  # noqa: E402
from models import AITaskLog, Content, Images, db  # noqa: E402
from webapp import accounts, create_app  # noqa: E402

PASSWORD = "bench password 123"  # noqa: S105 - a throwaway user in a throwaway database


def seed(articles: int) -> tuple[int, list[int]]:
    """The account, and the ids of the six images of the article the task covers."""
    with db.connection_context():
        schema.upgrade()
        user = accounts.create_user("bench@example.com", PASSWORD, account_name="Bench")
        account = user.account_id
        image_settings.save(account, {"provider": "placeholder", "model": "placeholder-v1",
                                      "max_in_article_images": 5})
        with db.atomic():
            for start in range(0, articles, 200):
                rows = [{"account": account, "title": f"Article {n}", "meta_title": f"Meta {n}"}
                        for n in range(start, min(articles, start + 200))]
                Content.insert_many(rows).execute()
            content_ids = [c.id for c in Content.select(Content.id).order_by(Content.id)]
            for start in range(0, len(content_ids), 100):
                rows = []
                for cid in content_ids[start:start + 100]:
                    rows.append({"account": account, "content": cid, "image_type": "featured", "position": 0,
                                 "prompt": f"A featured scene for article {cid}"})
                    rows += [{"account": account, "content": cid, "image_type": "in_article", "position": p,
                              "prompt": f"Scene {p} of article {cid}"} for p in range(1, 6)]
                Images.insert_many(rows).execute()
        ids = [i.id for i in Images.select(Images.id).where(Images.content == content_ids[-1]).order_by(Images.id)]
    return account, ids


def running_task(account: int, ids: list[int], redis) -> str:
    """A task mid-run as the engine leaves it: rows in the database, each item job's meta in Redis."""
    task_id = "bench" + "0" * 27
    states = ["generated", "generated", "generating", "queued", "queued", "queued"]
    with db.connection_context():
        AITaskLog.create(task_id=task_id, account=account, function_name="generate_images_from_prompts",
                         state="running", phase="AI_CALL", message="Generating image 3 of 6 with AI",
                         item_ids=ids, totals={"total": 6, "skipped": 0})
        for image_id, status in zip(ids, states, strict=True):
            Images.update(status=status, task_id=task_id,
                          image_url=f"/media/images/{image_id}.webp?v=0" if status == "generated" else None,
                          cost=0 if status == "generated" else None).where(Images.id == image_id).execute()
    for position, image_id in enumerate(ids):
        job = Job.create("builtins.print", id=item_job_id(task_id, position, image_id), connection=redis,
                         meta={"phase": "AI_CALL", "call_started_at": time.time()})
        job.save()
    return task_id


def timed(client, url, headers, count, counter) -> dict:
    client.get(url, headers=headers)  # warm: templates compiled, connections open
    times, queries = [], []
    for _ in range(count):
        before = counter["n"]
        started = time.perf_counter()
        response = client.get(url, headers=headers)
        times.append((time.perf_counter() - started) * 1000)
        queries.append(counter["n"] - before)
        assert response.status_code == 200, (url, response.status_code)
    cuts = statistics.quantiles(times, n=100)
    return {"p50": statistics.median(times), "p95": cuts[94], "max": max(times), "queries": max(queries),
            "bytes": len(response.data)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--articles", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()

    app = create_app({"TESTING": True})
    redis = get_redis()
    redis.ping()
    started = time.perf_counter()
    account, ids = seed(args.articles)
    task_id = running_task(account, ids, redis)
    print(f"Seeded {args.articles} articles × 6 images in {time.perf_counter() - started:.1f} s "
          f"(SQLite at {WORK}); Redis: {'REDIS_URL' if load_config().redis_url else 'embedded'}")

    counter = {"n": 0}
    original = db.obj.execute_sql

    def counting(sql, params=None, *a, **kw):
        counter["n"] += 1
        return original(sql, params, *a, **kw)

    db.obj.execute_sql = counting
    client = app.test_client()
    client.get("/login")
    with client.session_transaction() as session:
        token = session["csrf_token"]
    client.post("/login", data={"email": "bench@example.com", "password": PASSWORD, "csrf_token": token})

    htmx = {"HX-Request": "true"}
    last_page = (args.articles + 19) // 20
    rows = [
        ("progress fragment, 6-image task", f"/writer/tasks/{task_id}/progress", htmx, args.requests),
        ("progress JSON API, same task", f"/v1/system/task_progress/{task_id}/", {}, args.requests),
        ("Images page 1 (20 articles)", "/writer/images", {}, max(20, args.requests // 4)),
        (f"Images page {last_page} (last)", f"/writer/images?page={last_page}", {}, max(20, args.requests // 4)),
        ("Images page, ?status=generated", "/writer/images?status=generated", {}, max(20, args.requests // 4)),
    ]
    print(f"\n{'request':38} {'n':>5} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'queries':>8} {'KiB':>6}")
    for label, url, headers, count in rows:
        result = timed(client, url, headers, count, counter)
        print(f"{label:38} {count:>5} {result['p50']:>8.2f} {result['p95']:>8.2f} {result['max']:>8.2f} "
              f"{result['queries']:>8} {result['bytes'] / 1024:>6.1f}")
    print("\n(queries: SQL statements per request, session and CSRF checks included)")

    for position, image_id in enumerate(ids):
        redis.delete(f"rq:job:{item_job_id(task_id, position, image_id)}")
    if not load_config().redis_url:
        # The embedded Redis of the throwaway folder; it drops the connection as it exits.
        with contextlib.suppress(Exception):
            redis.shutdown(nosave=True)
    db.close()
    shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
