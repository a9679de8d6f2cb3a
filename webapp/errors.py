"""JSON errors in the API's one shape: {"error": sentence, "type": kind}."""

from flask import jsonify


def json_error(message: str, kind: str, status: int):
    return jsonify({"error": message, "type": kind}), status
