"""bench/dispatch.py keeps running: its quick mode completes and prints its figures (no timing asserted)."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_dispatch_bench_quick_runs_and_prints_ratios() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STACKL_")}
    result = subprocess.run(
        [sys.executable, "-m", "bench.dispatch", "--quick"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "## sqlite" in result.stdout
    if os.environ.get("PGHOST"):
        assert "## postgresql" in result.stdout
    for row in (
        "broker in-process (baseline)",
        "jobs via agent, burst",
        "jobs via agent, paced",
        "noop tasks via worker",
    ):
        assert row in result.stdout, result.stdout
    assert "x baseline time" in result.stdout
