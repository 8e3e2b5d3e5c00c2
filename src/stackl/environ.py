"""The CLI's environment: ``STACKL_URL``, ``STACKL_TOKEN``, ``STACKL_CONFIG_DIR``, ``STACKL_CA_FILE``, its home.

Kept out of ``config`` (the processes' pydantic settings) so that a CLI call does not import pydantic-settings
just to read three variables: every ``stackl`` command pays its imports before doing anything.
"""

import os
from pathlib import Path
from typing import Literal


def client_env(name: Literal["url", "token", "config_dir", "ca_file"]) -> str | None:
    """A client variable (STACKL_URL, STACKL_TOKEN, STACKL_CONFIG_DIR, STACKL_CA_FILE), read for the CLI."""
    return os.environ.get(f"STACKL_{name.upper()}") or None


def client_home() -> Path:
    """The CLI's home directory (for ~/.stackl)."""
    return Path(os.path.expanduser("~"))
