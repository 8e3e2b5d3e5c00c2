"""The private work directory of one job attempt (agents.md §6.1).

`<data-dir>/jobs/<job_id>-<attempt>/` is created with mode 0700 and every file in it with 0600, so other users
of the agent's machine read nothing. It holds `job.json` (the payload without secrets), `variables.json`,
`secrets.json` (after the secret handler), an empty `outputs.json` and whatever the tool adds. Secret files go
before the result is sent; the directory goes after it, unless kept for debugging (minus secrets).
"""

import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any, BinaryIO

from stackl.agent.executors.base import Job

DIR_MODE = 0o700
FILE_MODE = 0o600


def open_private(path: Path) -> BinaryIO:
    """Open `path` for writing bytes, created with mode 0600 (a captured stdout that may hold secrets)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    os.fchmod(fd, FILE_MODE)
    return os.fdopen(fd, "wb")


def write_private(path: Path, content: str | bytes) -> Path:
    """Write `content` to `path` with mode 0600 from its first byte (never readable by others, not even briefly)."""
    data = content.encode("utf-8") if isinstance(content, str) else content
    with open_private(path) as file:  # an existing file keeps its mode on O_CREAT: open_private resets it
        file.write(data)
    return path


def write_json(path: Path, value: Any) -> Path:
    return write_private(path, json.dumps(value, indent=2, sort_keys=True) + "\n")


class WorkDir:
    """The files of one job attempt; see the module docstring for the layout."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.job_file = root / "job.json"
        self.variables_file = root / "variables.json"
        self.secrets_file = root / "secrets.json"
        self.outputs_file = root / "outputs.json"
        self.src = root / "src"

    @classmethod
    def create(
        cls, data_dir: Path, job: Job, *, variables: dict[str, Any], secrets: dict[str, Any]
    ) -> "WorkDir":
        """Create the directory of `job` afresh (a left-over one of the same attempt is removed first).

        Args:
            data_dir: the agent's data directory.
            job: the payload; `job.json` gets it without secrets.
            variables: the content of `variables.json` (the parameters, as the tool wants them).
            secrets: the content of `secrets.json` (after the secret handler).
        """
        jobs = data_dir / "jobs"
        jobs.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
        root = jobs.resolve() / f"{job.job_id}-{job.attempt}"  # absolute: its processes carry it (proctree)
        if root.exists():
            shutil.rmtree(root)
        root.mkdir(mode=DIR_MODE)
        root.chmod(DIR_MODE)  # mkdir's mode is filtered by the umask
        workdir = cls(root)
        write_json(workdir.job_file, job.without_secrets())
        write_json(workdir.variables_file, variables)
        write_json(workdir.secrets_file, secrets)
        write_private(workdir.outputs_file, "")
        return workdir

    def path(self, name: str) -> Path:
        return self.root / name

    def copy_code(self, code_dir: Path) -> Path:
        """Copy the code directory into `src/` (terraform, packer): concurrent runs never share build output."""
        shutil.copytree(code_dir, self.src, symlinks=True, ignore=shutil.ignore_patterns(".terraform"))
        self.src.chmod(DIR_MODE)
        return self.src

    def remove_secrets(self, extra: Iterable[Path] = ()) -> None:
        """Delete `secrets.json` and the tool's other secret-bearing files and directories."""
        for path in [self.secrets_file, *extra]:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def remove_stale(data_dir: Path) -> list[Path]:
    """Remove every job directory under `<data_dir>/jobs/` (at start, none is in use); those removed.

    They are what an agent killed mid-job left behind, secret files included: nothing runs them any more
    (the job's next attempt gets a directory of its own), so they go whole, even with `--keep-workdirs`.
    """
    jobs = data_dir / "jobs"
    removed = []
    for root in sorted(jobs.iterdir()) if jobs.is_dir() else []:
        if root.is_dir() and not root.is_symlink():
            shutil.rmtree(root, ignore_errors=True)
        else:
            root.unlink(missing_ok=True)
        removed.append(root)
    return removed
