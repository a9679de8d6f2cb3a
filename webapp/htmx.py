"""What the staff pages share about answering htmx: toasts, and errors a person can read.

htmx does the showing itself (see the htmx-config meta tag in base.html): a form re-rendered with what was
wrong is swapped in place whatever its 4xx status, and a refusal is a toast rendered here and sent to
#toasts by the HX-Retarget / HX-Reswap headers. A plain browser request gets the usual error page or a
flash and a redirect.
"""

from flask import Response, render_template, request
from werkzeug.exceptions import HTTPException

from jobs.errors import AIFunctionError, Conflict, NotFound, ValidationError

# Sentences for the statuses a page can answer with when the view gave none of its own.
DEFAULT_MESSAGES = {
    404: "Not found.",
    405: "That action is not allowed here.",
    413: "The form is too large.",
}


def is_htmx() -> bool:
    return request.headers.get("HX-Request") == "true"


def toast(message: str, category: str = "info") -> str:
    """An out-of-band toast to append to a fragment response (shown in #toasts)."""
    return render_template("_toast.html", message=message, category=category, oob=True)


def message(text: str, status: int = 200, category: str = "error") -> Response:
    """A refusal, or a notice that changes nothing on the page: for htmx a toast (the text escaped by
    Jinja, as it may echo what was typed) appended to #toasts in place of the request's own swap. Other
    callers (a plain form post, a script) get the sentence as plain text."""
    if not is_htmx():
        return Response(text, status=status, mimetype="text/plain")
    return Response(render_template("_toast.html", message=text, category=category), status=status,
                    headers={"HX-Retarget": "#toasts", "HX-Reswap": "beforeend"})


def status_for(exc: AIFunctionError) -> int:
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, Conflict):
        return 409
    if isinstance(exc, ValidationError):
        return 400
    return 503  # the queue or a provider could not be reached: worth trying again later


def install_error_handlers(bp) -> None:
    """Errors under this blueprint (CSRF refusals included) answer htmx with a readable sentence."""

    @bp.errorhandler(HTTPException)
    def _http_error(exc):
        # A crash (500) has nothing to say that app.js's sentence for a proxy's error page does not, and
        # that sentence lands in the progress panel when a poll failed: the same wording for both.
        if not is_htmx() or (exc.code or 500) >= 500:
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
