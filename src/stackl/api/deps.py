"""Dependencies shared by every route: the open ports, the settings, the calling subject, conditional headers.

Routes declare ``ports: PortsDep`` and get the object ``create_app`` was given; nothing is looked up globally.
"""

from typing import Annotated

from fastapi import Depends, Request

from stackl import errors
from stackl.config import Settings
from stackl.usecases.ports import Ports

LOCAL_SUBJECT = "local"


def _ports(request: Request) -> Ports:
    ports: Ports = request.app.state.ports
    return ports


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _subject(request: Request) -> str:
    """Who is calling. With auth off every request acts as ``local`` (api.md, roles)."""
    return str(getattr(request.state, "subject", LOCAL_SUBJECT))


PortsDep = Annotated[Ports, Depends(_ports)]
SettingsDep = Annotated[Settings, Depends(_settings)]
SubjectDep = Annotated[str, Depends(_subject)]


def parse_revision_header(value: str | None, *, header: str) -> int | None:
    """The revision in an ``If-Match`` style header (``"7"``, ``W/"7"`` or ``7``); None when absent.

    Raises:
        Malformed: not a revision number.
    """
    if value is None or value.strip() == "":
        return None
    text = value.strip()
    if text.startswith("W/"):
        text = text[2:]
    text = text.strip('"')
    if not (text.isascii() and text.isdigit()):  # "²".isdigit() is true, int("²") fails
        raise errors.Malformed(
            f'{header} must be a revision number such as "3"',
            errors=[{"loc": ["header", header], "msg": "must be a revision number", "type": "malformed"}],
        )
    return int(text)


def if_match(request: Request) -> int | None:
    """The ``If-Match`` precondition of a write."""
    return parse_revision_header(request.headers.get("if-match"), header="If-Match")


def if_none_match_any(request: Request) -> bool:
    """``If-None-Match: *`` on a write: create only."""
    return request.headers.get("if-none-match", "").strip() == "*"


IfMatchDep = Annotated[int | None, Depends(if_match)]
IfAbsentDep = Annotated[bool, Depends(if_none_match_any)]
