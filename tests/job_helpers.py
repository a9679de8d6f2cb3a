"""Tiny jobs for testing the queue plumbing itself (the worker imports them by path)."""


def add(a, b):
    return a + b


def always_fails(reason):
    raise RuntimeError(reason)
