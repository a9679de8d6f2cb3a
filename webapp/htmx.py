"""What the staff pages share about answering htmx: toasts, and errors a person can read.

An htmx request that fails gets its sentence as plain text with the real status code; static/app.js
shows it as a toast. A plain browser request gets the usual error page or a flash and a redirect.
"""

from flask import Response, render_template, request
from werkzeug.exceptions import HTTPException

from jobs.errors import AIFunctionError, NotFound, ValidationError
from webapp.writer import InProgress

# Sentences for the statuses a page can answer with when the view gave none of its own.
DEFAULT_MESSAGES = {
    404: "Not found.",
    405: "That action is not allowed here.",
    413: "The form is too large.",
    500: "Something went wrong on the server; try again in a moment.",
}


def is_htmx() -> bool:
    return request.headers.get("HX-Request") == "true"


def toast(message: str, category: str = "info") -> str:
    """An out-of-band toast to append to a fragment response (shown in #toasts)."""
    return render_template("_toast.html", message=message, category=category, oob=True)


def message(text: str, status: int, category: str = "error") -> Response:
    """A refusal: plain text with its status for htmx (app.js shows it as a toast)."""
    return Response(text, status=status, mimetype="text/plain",
                    headers={"X-Toast-Category": category})


def nothing(text: str, category: str = "info") -> Response:
    """Answer an htmx request with only a toast, leaving the page as it is."""
    return Response(toast(text, category), headers={"HX-Reswap": "none"})


def status_for(exc: AIFunctionError) -> int:
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, InProgress):
        return 409
    if isinstance(exc, ValidationError):
        return 400
    return 503  # the queue or a provider could not be reached: worth trying again later


def install_error_handlers(bp) -> None:
    """Errors under this blueprint (CSRF refusals included) answer htmx with a readable sentence."""

    @bp.errorhandler(HTTPException)
    def _http_error(exc):
        if not is_htmx():
            return exc
        # Werkzeug's stock descriptions are written for web pages; a view's own description is kept.
        own = exc.description if exc.description != type(exc).description else None
        text = own or DEFAULT_MESSAGES.get(exc.code) or exc.description or "The request failed."
        return message(text, exc.code or 500)

    @bp.errorhandler(AIFunctionError)
    def _ai_error(exc):
        status = status_for(exc)
        if is_htmx():
            return message(exc.message, status)
        return Response(render_template("error.html", message=exc.message, status=status), status=status)
