"""Document responses: JSON by default, YAML on ``Accept: application/yaml``, revision headers, warnings."""

from collections.abc import Sequence
from typing import Any

import yaml
from fastapi import Request
from fastapi.responses import JSONResponse, Response

YAML_MEDIA_TYPES = ("application/yaml", "application/x-yaml", "text/yaml")


def wants_yaml(request: Request) -> bool:
    """Whether the client asked for YAML."""
    accept = request.headers.get("accept", "")
    return any(t in accept for t in YAML_MEDIA_TYPES) and "application/json" not in accept


def respond(
    request: Request,
    content: Any,
    *,
    status: int = 200,
    revision: int | None = None,
    warnings: Sequence[str] = (),
    headers: dict[str, str] | None = None,
) -> Response:
    """A JSON (or YAML) response with ``ETag``/``Stackl-Revision`` and one ``Stackl-Warning`` per warning."""
    response: Response
    if wants_yaml(request):
        text = yaml.safe_dump(content, sort_keys=False, allow_unicode=True)
        response = Response(text, status_code=status, media_type="application/yaml")
    else:
        response = JSONResponse(content, status_code=status)
    for key, value in (headers or {}).items():
        response.headers[key] = value
    if revision is not None:
        response.headers["ETag"] = f'"{revision}"'
        response.headers["Stackl-Revision"] = str(revision)
    for warning in warnings:
        response.headers.append("Stackl-Warning", warning.encode("ascii", "replace").decode())
    return response


def not_modified(request: Request, revision: int) -> Response | None:
    """A 304 when ``If-None-Match`` names the current revision, else None."""
    value = request.headers.get("if-none-match", "")
    tags = {t.strip().removeprefix("W/").strip('"') for t in value.split(",") if t.strip()}
    if str(revision) in tags or "*" in tags:
        return Response(status_code=304, headers={"ETag": f'"{revision}"', "Stackl-Revision": str(revision)})
    return None
