"""The fault suite's ledger: what was injected and tried, and what was lost or charged twice.

Fault tests record into it; conftest prints it as a table at the end of the run. "Images lost" and
"duplicate charges" must stay 0 — each test also asserts its own share.
"""

from collections import Counter

faults = Counter()
bad_inputs = Counter()
images_checked = 0
images_lost = 0
duplicate_charges = 0


def fault(kind: str, n: int = 1) -> None:
    faults[kind] += n


def bad_input(kind: str, n: int = 1) -> None:
    bad_inputs[kind] += n


def settle(images, provider_successes: Counter | None = None) -> tuple[int, int]:
    """Count images not ended (lost) and images charged more than once; return (lost, duplicates)."""
    global images_checked, images_lost, duplicate_charges
    lost = sum(i.status not in ("generated", "failed") for i in images)
    duplicates = sum(n > 1 for n in (provider_successes or Counter()).values())
    images_checked += len(images)
    images_lost += lost
    duplicate_charges += duplicates
    return lost, duplicates


def table() -> list[str]:
    rows = [("faults injected", sum(faults.values())), ("bad inputs tried", sum(bad_inputs.values())),
            ("images checked", images_checked), ("images lost", images_lost),
            ("duplicate charges", duplicate_charges)]
    lines = [f"{name:<22}{value:>8}" for name, value in rows]
    lines += [f"  fault: {kind:<40}{n:>5}" for kind, n in sorted(faults.items())]
    lines += [f"  input: {kind:<40}{n:>5}" for kind, n in sorted(bad_inputs.items())]
    return lines
