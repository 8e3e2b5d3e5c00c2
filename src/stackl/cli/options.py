"""The global options of every ``stackl`` command.

In a module of their own so that the root callback imports nothing heavy: ``context`` brings the HTTP client
and the settings, and a command loads it when it runs.
"""

from dataclasses import dataclass
from pathlib import Path


@dataclass
class Options:
    """The global options of spec/cli.md §1, set by the root callback and read by every command."""

    server: str | None = None
    token: str | None = None
    http_timeout_s: float = 30.0
    ca_file: Path | None = None
    quiet: bool = False
    verbose: bool = False
    no_color: bool = False
