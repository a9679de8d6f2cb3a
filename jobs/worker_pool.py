"""One dyno, one `python worker.py`: RQ's WorkerPool running the image workers, the part of a dyno's
shutdown that happens inside a work-horse, and what the dyno's processes weigh.

RQ's pool forks its workers from one parent (so the modules the parent loaded are shared, copy-on-write),
starts a new one within a second when one dies, and on SIGTERM or SIGINT asks each for a warm shutdown
(SIGINT). Two things it cannot do as it stands, so `ImagePool` changes them: its `run_worker` builds a
worker from the class alone, with RQ's defaults (no store queue, no `work_horse_killed_handler`, RQ's
intervals, no reconnect loop after a lost Redis), and it starts every worker `with_scheduler=True`. Here
each process runs the app's own worker loop (worker.py), and only one of them — the lead — runs RQ's
scheduler; a respawned lead hands the scheduler to its successor.
"""

import contextlib
import logging
import signal
from dataclasses import dataclass
from pathlib import Path

from rq.worker_pool import ForkProcess, WorkerData, WorkerPool

log = logging.getLogger(__name__)


class ImagePool(WorkerPool):
    def __init__(self, queues, connection, num_workers: int, *, run, name: str):
        """`run(name, with_scheduler=..., burst=...)` is one worker's whole life, called in each forked
        process; workers are named `<name>.<n>`, n counting every process started, so a respawn never
        takes the name of a dead worker RQ still lists."""
        super().__init__(queues, connection=connection, num_workers=num_workers)
        self._run = run
        self._base_name = name
        self._started = 0
        self.lead: str | None = None  # the worker that runs RQ's scheduler

    def start_worker(self, count=None, burst=True, _sleep=0, logging_level="INFO"):
        self._started += 1
        name = f"{self._base_name}.{self._started}"
        with_scheduler = self.lead not in self.worker_dict  # the first one, or the dead lead's successor
        if with_scheduler:
            self.lead = name
        process = ForkProcess(target=_run_worker, args=(self._run, name, with_scheduler, burst),
                              name=f"Worker {name} (WorkerPool {self.name})")
        process.start()
        self.worker_dict[name] = WorkerData(name=name, pid=process.pid, process=process)
        log.info("pool: started worker %s (pid %d)%s", name, process.pid, ", with the scheduler" * with_scheduler)


def _run_worker(run, name: str, with_scheduler: bool, burst: bool) -> None:
    # A respawned worker is forked with the pool's own handlers (which would stop the whole pool); until
    # its worker installs RQ's, a signal ends it as it would any process.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    run(name, with_scheduler=with_scheduler, burst=burst)


# --- what the dyno weighs ------------------------------------------------------------------------------

@dataclass(frozen=True)
class ProcessMemory:
    pid: int
    ppid: int
    rss: int  # bytes
    pss: int  # bytes: each page shared after fork() counted once across the processes that share it
    pss_anon: int  # bytes: of which the processes' own data (the rest maps files: code, libraries)


@dataclass(frozen=True)
class DynoMemory:
    processes: tuple[ProcessMemory, ...]

    @property
    def rss(self) -> int:
        """What adding up each process' RSS says (counts every shared page once per process: too much)."""
        return sum(p.rss for p in self.processes)

    @property
    def pss(self) -> int:
        """The processes' real total, each page once: what the dyno's memory meter (its cgroup) counts,
        give or take the file pages it counts as cache."""
        return sum(p.pss for p in self.processes)

    @property
    def pss_anon(self) -> int:
        return sum(p.pss_anon for p in self.processes)

    def __str__(self) -> str:
        return (f"{len(self.processes)} processes, PSS {self.pss / 2**20:.0f} MB (anonymous "
                f"{self.pss_anon / 2**20:.0f} MB); their RSS summed {self.rss / 2**20:.0f} MB")


def process_tree(pid: int) -> list[int]:
    """`pid` and every process under it (Linux /proc), parents first."""
    tree, index = [pid], 0
    while index < len(tree):
        for task in Path(f"/proc/{tree[index]}/task").glob("*/children"):
            with contextlib.suppress(OSError, ValueError):
                tree += [int(child) for child in task.read_text().split() if int(child) not in tree]
        index += 1
    return tree


def dyno_memory(pid: int) -> DynoMemory:
    """The memory of `pid` and everything under it (a pool, its workers, their work-horses and the
    scheduler), from /proc/<pid>/smaps_rollup; a process that ended meanwhile is left out."""
    found = []
    for each in process_tree(pid):
        try:
            rollup = Path(f"/proc/{each}/smaps_rollup").read_text()
            ppid = int(Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        fields = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in rollup.splitlines()[1:]
                  if line.endswith(" kB")}
        found.append(ProcessMemory(each, ppid, fields.get("Rss", 0), fields.get("Pss", 0), fields.get("Pss_Anon", 0)))
    return DynoMemory(tuple(found))
