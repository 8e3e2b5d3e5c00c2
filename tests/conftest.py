"""Test-suite wide rules: markers from folders, clean environment, and a valid-document factory import path."""

import os
from pathlib import Path

import pytest

_FOLDER_MARKERS = {"unit": "unit", "integration": "integration", "e2e": "e2e"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test from its folder; a test outside the three folders is an error."""
    root = Path(__file__).parent
    for item in items:
        parts = Path(str(item.fspath)).relative_to(root).parts
        marker = _FOLDER_MARKERS.get(parts[0]) if len(parts) > 1 else None
        if marker is None:
            raise pytest.UsageError(
                f"{item.nodeid}: tests live in tests/unit, tests/integration or tests/e2e"
            )
        item.add_marker(getattr(pytest.mark, marker))
        if "browser" in parts:
            item.add_marker(pytest.mark.browser)


@pytest.fixture(autouse=True)
def clean_environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No STACKL_/ANSIBLE_/TF_ variable leaks in from the developer's shell; HOME is a fresh directory."""
    for key in list(os.environ):
        if key.startswith(("STACKL_", "ANSIBLE_", "TF_")):
            monkeypatch.delenv(key)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
