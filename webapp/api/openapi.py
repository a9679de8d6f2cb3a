"""`GET /v1/openapi.json`: the API's OpenAPI 3.1 description, docs/openapi.json as it ships.

The document is hand-written (tests/test_openapi.py holds it to the routes), and public: the API's shape
is no secret, and tools that read it (code generators, API explorers) should not need a token. Like
webapp/public.py, this module adds its endpoint to auth.PUBLIC_ENDPOINTS itself; it is imported by
webapp.api.init_app before the blueprint registers.
"""

from pathlib import Path

from flask import Response, request

from webapp import auth
from webapp.api import bp

SPEC_PATH = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
ENDPOINT = "api.openapi_document"

auth.PUBLIC_ENDPOINTS.add(ENDPOINT)


@bp.get("/openapi.json")
def openapi_document():
    """The OpenAPI document, byte for byte, with an ETag (304 to a client that has it)."""
    response = Response(SPEC_PATH.read_bytes(), mimetype="application/json")
    response.headers["Cache-Control"] = "no-cache"
    response.add_etag()
    return response.make_conditional(request)
