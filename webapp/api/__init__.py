"""The JSON API (`../shared/api.md`): session or bearer-token auth, errors as {"error", "type"}."""

from flask import Blueprint, request
from werkzeug.exceptions import HTTPException

from jobs.errors import AIFunctionError, Conflict, NotFound, ValidationError
from webapp.errors import json_error
from webapp.inputs import check_text

bp = Blueprint("api", __name__, url_prefix="/v1")


def init_app(app):
    from webapp.api import content, export, images, openapi, progress, settings, tasks  # noqa: F401

    app.register_blueprint(bp)

    @app.errorhandler(HTTPException)
    def _http_error(exc):
        if request.path.startswith("/v1/"):
            kind = {404: "NotFound", 405: "MethodNotAllowed", 413: "ValidationError", 401: "AuthError",
                    403: "PermissionDenied"}.get(exc.code, "HTTPError")
            message = "Not found." if exc.code == 404 else exc.description
            return json_error(message, kind, exc.code)
        return exc


@bp.errorhandler(ValidationError)
def _validation(exc):
    status = 409 if isinstance(exc, Conflict) else 400
    return json_error(exc.message, exc.kind, status)


@bp.errorhandler(NotFound)
def _not_found(exc):
    return json_error(exc.message, "NotFound", 404)


@bp.errorhandler(AIFunctionError)
def _execution(exc):
    return json_error(exc.message, exc.kind, 503)


def json_body() -> dict:
    """The request's JSON object, or a 400 that says what to send."""
    if not request.is_json:
        raise ValidationError("Send a JSON object with Content-Type: application/json.")
    try:
        data = request.get_json(silent=True)
    except RecursionError:
        raise ValidationError("The JSON is nested too deeply.") from None
    if not isinstance(data, dict):
        raise ValidationError("The body must be a JSON object.")
    check_text(data)
    return data
