"""Tiny jobs for testing the queue plumbing itself (the worker imports them by path)."""


def add(a, b):
    return a + b


def always_fails(reason):
    raise RuntimeError(reason)


def niceness():
    """The CPU niceness of the process running this job."""
    import os

    return os.nice(0)


def niceness_after_lowering(by):
    import os

    from jobs import runtime

    runtime.lower_priority(by)
    return os.nice(0)
