"""Input at the edges, parsed in one place: ids and numbers are ASCII digits within the database's
integer range ("²" and "١٢" are digits to Python, not to us), text is valid UTF-8 without NUL, and
JSON is not nested deeper than a person would write — so odd input is a 400 or a 404, never a 500."""

from flask import abort
from werkzeug.routing import BaseConverter
from werkzeug.routing import ValidationError as NoMatch

from jobs.errors import ValidationError

MAX_ID = 2**31 - 1  # PostgreSQL's integer, the type of every id column


def is_id_text(text) -> bool:
    return isinstance(text, str) and 0 < len(text) <= 10 and text.isascii() and text.isdigit() \
        and 0 < int(text) <= MAX_ID


def parse_id(text, name: str) -> int:
    """A positive id from a query string or a form field; ValidationError names the field."""
    if not is_id_text(text):
        raise ValidationError(f"{name} must be a whole number from 1 to {MAX_ID}.")
    return int(text)


def parse_page(text, default: int = 1) -> int:
    """A page number from the query string; anything odd is the first page."""
    return int(text) if is_id_text(text) else default


class IdConverter(BaseConverter):
    """`<int:...>` in every route: ASCII digits within the id range, else the route does not match (404).
    0 matches (rq-dashboard numbers its Redis instances from 0; no row has id 0, so ours answer 404)."""

    regex = r"[0-9]{1,10}"

    def to_python(self, value):
        if not (value.isascii() and value.isdigit() and int(value) <= MAX_ID):
            raise NoMatch()
        return int(value)

    def to_url(self, value):
        return str(int(value))


def check_text(value, path: str = "body") -> None:
    """Every string in a parsed JSON value must be storable: valid UTF-8 (no lone surrogates) and no NUL."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ValidationError(f"{path} contains a NUL character.")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValidationError(f"{path} is not valid text (it contains a lone surrogate such as \\ud800).") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            check_text(key, path)
            check_text(item, f"{path}.{key}" if isinstance(key, str) and key.isascii() else path)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_text(item, f"{path}[{index}]")


def init_app(app):
    # Before any blueprint registers its rules: converters are bound when a rule is added.
    app.url_map.converters["int"] = IdConverter

    @app.before_request
    def _refuse_unstorable_form_text():
        from flask import request

        from webapp.errors import json_error
        from webapp.htmx import message

        try:
            check_text(request.path, "the address")
        except ValidationError:
            abort(404)  # no route has such a path; answered like any other unknown address
        for name, value in [*request.args.items(multi=True), *request.form.items(multi=True)]:
            try:
                check_text(value, name)
            except ValidationError as refused:
                if request.path.startswith("/v1/"):  # the API's errors are JSON, whatever went wrong
                    return json_error(refused.message, refused.kind, 400)
                return message(refused.message, 400)
        return None
