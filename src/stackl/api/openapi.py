"""The OpenAPI document's error responses, documented once for every route.

Every route can answer with the problem bodies of ``api.problems`` (api.md §0.5): 400 for malformed queries,
headers or JSON, 404, 405 for a method the path does not serve, 409/412 on writes, 413/415 on bodies, 422
for invalid bodies, 503 when the database is away. FastAPI documents none of them but its own 422 shape,
which STACKL never sends; ``install`` rewrites the generated schema so that every operation lists them with
the ``Problem`` schema under ``application/problem+json`` (schemathesis' ST103/ST201/ST205 checks, and
clients generated from the schema, rely on that).
"""

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from stackl.api.problems import PROBLEM_MEDIA_TYPE

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "RFC 9457 problem details (api.md §0.5)",
    "type": "object",
    "required": ["type", "code", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "code": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "request_id": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"loc": {"type": "array", "items": {}}, "msg": {"type": "string"}},
            },
        },
    },
    "additionalProperties": True,
}

PROBLEM_STATUSES: dict[str, str] = {
    "400": "malformed request (query, header, path or JSON)",
    "401": "authentication required",
    "403": "forbidden",
    "404": "not found",
    "405": "method not allowed",
    "409": "conflict",
    "412": "precondition failed (If-Match)",
    "413": "payload too large",
    "415": "unsupported media type",
    "422": "validation failed",
    "503": "service unavailable",
}

_UNUSED = ("HTTPValidationError", "ValidationError")


def problem_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


def add_problems(schema: dict[str, Any]) -> dict[str, Any]:
    """Document every problem status on every operation (FastAPI's own 422 shape replaced)."""
    for item in schema.get("paths", {}).values():
        for method, operation in item.items():
            if method not in {"get", "put", "post", "delete", "patch", "head", "options"}:
                continue
            responses: dict[str, Any] = operation.setdefault("responses", {})
            for status, description in PROBLEM_STATUSES.items():
                existing = responses.get(status, {})
                content = existing.get("content", {})
                if status == "422" or not content or set(content) <= {"application/json"}:
                    responses[status] = problem_response(existing.get("description") or description)
                    if content.get("application/json") and status != "422":
                        # a route documented a JSON body of its own for this status (e.g. readyz): keep it
                        responses[status]["content"]["application/json"] = content["application/json"]
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Problem"] = PROBLEM_SCHEMA
    text = repr(schema.get("paths", {}))
    for name in _UNUSED:
        if f"#/components/schemas/{name}'" not in text:
            components.pop(name, None)
    return schema


def install(app: FastAPI) -> None:
    """Have ``app.openapi()`` (and ``/openapi.json``) document the problem responses of every route."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
                openapi_version=app.openapi_version,
                tags=app.openapi_tags,
                servers=app.servers,
            )
            app.openapi_schema = add_problems(schema)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
