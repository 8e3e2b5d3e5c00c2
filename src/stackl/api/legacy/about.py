"""STACKL 0.5 ``/about``: the host name of the serving process (a JSON string)."""

import socket

from fastapi import APIRouter

router = APIRouter(tags=["about"])


@router.get("/about")
async def get_hostname() -> str:
    """Host name of the process that served this request."""
    return socket.gethostname()
