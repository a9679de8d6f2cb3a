"""Viewers of one task's progress, for `make bench`: `python scripts/pollers.py URL TOKEN --viewers 50`.

Each viewer is a thread with its own connection that asks once a second, as the progress panel does,
and revalidates with `If-None-Match` when the answer had an `ETag` (a browser does that by itself).
With `--interval 0` the viewers ask as fast as they are answered: the most polls per second served.
Prints one JSON line: latencies (ms), requests, 304s and errors. Run as its own process, so the
benchmark's fake provider and this load do not share an interpreter lock.
"""

import argparse
import json
import statistics
import threading
import time

import requests


def viewer(url, headers, seconds, interval, results, lock):
    session = requests.Session()
    etag = None
    deadline = time.monotonic() + seconds
    times, not_modified, errors = [], 0, 0
    next_at = time.monotonic()
    while time.monotonic() < deadline:
        asked = {**headers, **({"If-None-Match": etag} if etag else {})}
        started = time.perf_counter()
        try:
            answer = session.get(url, headers=asked, timeout=10)
        except requests.RequestException:
            errors += 1
        else:
            times.append((time.perf_counter() - started) * 1000)
            if answer.status_code == 304:
                not_modified += 1
            elif answer.status_code == 200:
                etag = answer.headers.get("ETag")
            else:
                errors += 1
        next_at += interval
        time.sleep(max(0.0, next_at - time.monotonic()))
    with lock:
        results["times"] += times
        results["not_modified"] += not_modified
        results["errors"] += errors


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("token")
    parser.add_argument("--viewers", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--htmx", action="store_true", help="ask as htmx does (the fragment)")
    args = parser.parse_args()
    headers = {"Authorization": f"Bearer {args.token}", **({"HX-Request": "true"} if args.htmx else {})}
    results, lock = {"times": [], "not_modified": 0, "errors": 0}, threading.Lock()
    threads = []
    for _ in range(args.viewers):
        thread = threading.Thread(target=viewer, args=(args.url, headers, args.seconds, args.interval, results, lock))
        threads.append(thread)
        thread.start()
        time.sleep(min(args.interval, 1.0) / args.viewers)  # spread over the second, as real viewers are
    for thread in threads:
        thread.join()
    times = sorted(results["times"])
    cuts = statistics.quantiles(times, n=100) if len(times) > 1 else [times[0] if times else 0] * 99
    print(json.dumps({"requests": len(times), "p50": statistics.median(times) if times else None, "p95": cuts[94],
                      "max": times[-1] if times else None, "per_second": len(times) / args.seconds,
                      "not_modified": results["not_modified"], "errors": results["errors"]}))


if __name__ == "__main__":
    main()
