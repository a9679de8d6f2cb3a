"""docs/openapi.json is hand-written, so it is held to what ships: it is an OpenAPI 3.1 document whose
every $ref resolves; its operations are exactly the app's /v1 routes (every route documented, every
documented route a route); its objects name the keys the API really answers; and GET /v1/openapi.json
serves it, without a login."""

import json
import re
from pathlib import Path

import pytest

import webapp.api.openapi  # noqa: F401 - the route registers on the API blueprint before any app is made
from tests.api_helpers import GENERATE, PROMPTS, SETTINGS, ApiClient, progress_url

ROOT = Path(__file__).resolve().parent.parent
SPEC_FILE = ROOT / "docs" / "openapi.json"
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
STATUS = re.compile(r"^([1-5][0-9][0-9]|[1-5]XX|default)$")


@pytest.fixture(scope="module")
def spec() -> dict:
    return json.loads(SPEC_FILE.read_text())


def _operations(spec: dict):
    for path, item in spec["paths"].items():
        for method in METHODS:
            if method in item:
                yield path, method, item[method]


def _walk(node, where="#"):
    """Every (JSON pointer, value) in the document."""
    yield where, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, f"{where}/{key.replace('~', '~0').replace('/', '~1')}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, f"{where}/{index}")


def _resolve(spec: dict, ref: str):
    """The value a local $ref points at; KeyError/IndexError when it points nowhere."""
    assert ref.startswith("#/"), f"only local references are used: {ref}"
    node = spec
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def _deref(spec: dict, node: dict) -> dict:
    while isinstance(node, dict) and "$ref" in node:
        node = _resolve(spec, node["$ref"])
    return node


# --- the document ---------------------------------------------------------------------------------

def test_the_document_is_openapi_3_1(spec):
    assert spec["openapi"] == "3.1.0"
    assert spec["info"]["title"] and spec["info"]["version"]
    assert spec["paths"], "no paths"
    problems = []
    schemes = spec["components"]["securitySchemes"]
    tags = {tag["name"] for tag in spec.get("tags", [])}
    operation_ids = {}
    for path, method, operation in _operations(spec):
        name = f"{method.upper()} {path}"
        if not path.startswith("/"):
            problems.append(f"{path}: a path starts with /")
        responses = operation.get("responses")
        if not responses:
            problems.append(f"{name}: no responses")
        for status in responses or {}:
            if not STATUS.match(str(status)):
                problems.append(f"{name}: {status!r} is not a status code")
        if operation.get("operationId") in operation_ids:
            problems.append(f"{name}: operationId {operation['operationId']} also names "
                            f"{operation_ids[operation['operationId']]}")
        operation_ids[operation.get("operationId")] = name
        for requirement in operation.get("security", spec.get("security", [])):
            problems += [f"{name}: security scheme {s!r} is not defined" for s in requirement if s not in schemes]
        problems += [f"{name}: tag {t!r} is not declared" for t in operation.get("tags", []) if t not in tags]
        # Every {name} in the path is a required path parameter, and every path parameter is in the path.
        shared = spec["paths"][path].get("parameters", [])
        parameters = [_deref(spec, p) for p in shared + operation.get("parameters", [])]
        declared = {p["name"] for p in parameters if p["in"] == "path"}
        templated = set(re.findall(r"\{([^}]+)\}", path))
        if declared != templated:
            problems.append(f"{name}: path parameters {sorted(declared)} but the path has {sorted(templated)}")
        problems += [f"{name}: path parameter {p['name']} is not required" for p in parameters
                     if p["in"] == "path" and p.get("required") is not True]
    assert None not in operation_ids, "an operation without operationId"
    for where, node in _walk(spec):
        if isinstance(node, dict) and isinstance(node.get("$ref"), str):
            try:
                _resolve(spec, node["$ref"])
            except (KeyError, IndexError, ValueError, TypeError):
                problems.append(f"{where}: $ref {node['$ref']} points nowhere")
    assert not problems, "docs/openapi.json:\n  " + "\n  ".join(problems)


def test_the_document_passes_openapi_spec_validator(spec):
    """The official 3.1 schema's verdict (openapi-spec-validator, pinned in requirements-dev.txt)."""
    import openapi_spec_validator

    openapi_spec_validator.validate(spec)


# --- the document and the routes ------------------------------------------------------------------

def _route_path(rule: str) -> str:
    """Werkzeug's `<int:content_id>` (or `<task_id>`) as OpenAPI's `{content_id}`."""
    return re.sub(r"<(?:[^<>:]+:)?([^<>]+)>", r"{\1}", rule)


def test_every_route_is_documented_and_every_documented_route_exists(app, spec):
    routes = {(method, _route_path(rule.rule)) for rule in app.url_map.iter_rules() if rule.rule.startswith("/v1")
              for method in rule.methods - {"HEAD", "OPTIONS"}}
    documented = {(method.upper(), path) for path, method, _ in _operations(spec)}
    undocumented = sorted(routes - documented, key=lambda r: (r[1], r[0]))
    missing = sorted(documented - routes, key=lambda r: (r[1], r[0]))
    lines = [f"  route not in docs/openapi.json: {method} {path}" for method, path in undocumented]
    lines += [f"  documented but no such route:   {method} {path}" for method, path in missing]
    assert not lines, "docs/openapi.json and the app's /v1 routes differ:\n" + "\n".join(lines)
    assert ("GET", "/v1/openapi.json") in routes


# --- the document and the answers -----------------------------------------------------------------

def _keys(spec: dict, name: str) -> set:
    """The property names a component schema documents (through allOf)."""
    schema = _deref(spec, spec["components"]["schemas"][name])
    keys = set(schema.get("properties", {}))
    for part in schema.get("allOf", []):
        part = _deref(spec, part)
        keys |= set(part.get("properties", {}))
        for inner in part.get("allOf", []):
            keys |= set(_deref(spec, inner).get("properties", {}))
    return keys


def _required(spec: dict, name: str) -> set:
    schema = _deref(spec, spec["components"]["schemas"][name])
    required = set(schema.get("required", []))
    for part in schema.get("allOf", []):
        required |= set(_deref(spec, part).get("required", []))
    return required


def _same_keys(spec, name, answer: dict, optional=()) -> None:
    documented, required = _keys(spec, name), _required(spec, name)
    assert set(answer) - documented == set(), f"{name}: answered but not documented: {sorted(set(answer) - documented)}"
    assert documented - set(answer) - set(optional) == set(), \
        f"{name}: documented but not answered: {sorted(documented - set(answer) - set(optional))}"
    assert required <= set(answer), f"{name}: required but not answered: {sorted(required - set(answer))}"


def test_the_documented_objects_are_what_the_api_answers(client, personas, spec, own_queue):
    api = ApiClient(client, personas.owner)
    settings = api.put(SETTINGS, json={"provider": "placeholder", "model": "placeholder-v1"})
    assert settings.status_code == 200, settings.get_json()
    _same_keys(spec, "Settings", settings.get_json(), optional={"webhook_secret"})
    created = api.post("/v1/writer/content/", json={
        "title": "Kites", "body": "<h2>Flying</h2><p>High.</p>",
        "images": [{"image_type": "featured", "prompt": "A red kite"}]})
    assert created.status_code == 201, created.get_json()
    content = created.get_json()
    _same_keys(spec, "Content", content)
    _same_keys(spec, "Image", content["images"][0])
    _same_keys(spec, "ContentPage", api.get("/v1/writer/content/").get_json())
    _same_keys(spec, "ImagePage", api.get("/v1/writer/images/").get_json())
    _same_keys(spec, "Prompts", api.get(PROMPTS).get_json())

    estimate = api.post(GENERATE, json={"ids": [content["images"][0]["id"]], "dry_run": True}).get_json()
    _same_keys(spec, "GenerateEstimate", estimate)
    _same_keys(spec, "Budget", estimate["budget"])
    started = api.post(GENERATE, json={"content_ids": [content["id"]]}).get_json()  # queued: no worker takes it
    _same_keys(spec, "GenerateStarted", started, optional={"skipped"})
    progress = api.get(progress_url(started["task_id"])).get_json()
    _same_keys(spec, "Progress", progress)
    _same_keys(spec, "ProgressImage", progress["images"][0])
    _same_keys(spec, "Totals", progress["totals"])
    runs = api.get("/v1/system/tasks/").get_json()
    _same_keys(spec, "TaskPage", runs)
    _same_keys(spec, "Task", runs["results"][0])
    _same_keys(spec, "CancelResult", api.post(f"/v1/system/tasks/{started['task_id']}/cancel/").get_json())
    _same_keys(spec, "Usage", api.get("/v1/system/usage/").get_json())
    refused = api.get("/v1/writer/content/999999/").get_json()
    _same_keys(spec, "Error", refused)
    bad = api.put(SETTINGS, json={"image_format": "gif"}).get_json()
    _same_keys(spec, "SettingsError", bad)


# --- the route ------------------------------------------------------------------------------------

def test_the_document_is_served_without_a_login(client):
    answer = client.get("/v1/openapi.json")
    assert answer.status_code == 200, answer.data[:200]
    assert answer.mimetype == "application/json"
    assert answer.get_json() == json.loads(SPEC_FILE.read_text())
    assert answer.headers["ETag"]
    again = client.get("/v1/openapi.json", headers={"If-None-Match": answer.headers["ETag"]})
    assert again.status_code == 304
    # A script that sends its token (or a stale one) gets the same document.
    stale = client.get("/v1/openapi.json", headers={"Authorization": "Bearer not-a-token"})
    assert stale.status_code == 200 and stale.get_json() == answer.get_json()
