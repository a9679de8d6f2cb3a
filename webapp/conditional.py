"""Conditional answers for what is polled: an `ETag` of the body and `304 Not Modified` when the poller
already has it. `no-cache` makes the browser ask every time (the panel must see changes at once) and
revalidate what it holds with `If-None-Match`; `private` keeps shared caches out of account data."""

from flask import Response, request


def conditional(response: Response) -> Response:
    response.headers["Cache-Control"] = "private, no-cache"
    response.add_etag()
    return response.make_conditional(request)
