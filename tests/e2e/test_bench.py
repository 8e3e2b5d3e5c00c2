"""The benchmarks keep running: each one's quick mode completes and prints its figures (no timing asserted)."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_bench(module: str) -> str:
    """Run ``python -m bench.<module> --quick`` without the developer's STACKL_ settings; its stdout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STACKL_")}
    result = subprocess.run(
        [sys.executable, "-m", f"bench.{module}", "--quick"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_api_bench_quick_runs_and_prints_ratios() -> None:
    out = run_bench("api")
    assert "## sqlite" in out
    if os.environ.get("PGHOST"):
        assert "## postgresql" in out
    assert "x baseline time" in out, out


def test_placement_bench_quick_runs_and_prints_the_ratio() -> None:
    out = run_bench("placement")
    rows = [re.split(r"\s{2,}", line) for line in out.splitlines() if line.startswith("10 x 1,000")]
    realistic = next(row for row in rows if row[0] == "10 x 1,000")
    assert re.fullmatch(r"\d+x", realistic[4]), out  # the Rego baseline ran: a ratio is printed
    assert float(realistic[1]) > 0


def test_dispatch_bench_quick_runs_and_prints_ratios() -> None:
    out = run_bench("dispatch")
    assert "## sqlite" in out
    if os.environ.get("PGHOST"):
        assert "## postgresql" in out
    for row in (
        "broker in-process (baseline)",
        "jobs via agent, burst",
        "jobs via agent, paced",
        "noop tasks via worker",
    ):
        assert row in out, out
    assert "x baseline time" in out


def test_concurrency_bench_quick_runs_and_prints_ratios() -> None:
    out = run_bench("concurrency")
    assert "sqlite: 20 x 2 s" in out, out
    if os.environ.get("PGHOST"):
        assert "postgresql: 20 x 2 s" in out, out
    assert "ratio to D" in out


def test_hardening_bench_quick_runs_and_prints_its_figures() -> None:
    out = run_bench("hardening")
    for row in ("YAML 0.1 MB POST", "JSON (same document)", "no token, Content-Length", "slow-loris"):
        assert row in out, out
    assert "x baseline" in out


def test_cli_bench_quick_runs_and_prints_ratios() -> None:
    out = run_bench("cli")
    rows = {
        re.split(r"\s{2,}", line)[0]: line
        for line in out.splitlines()
        if line.startswith(("python", "stackl"))
    }
    assert set(rows) >= {
        "python -c pass (baseline)",
        "stackl --help",
        "stackl get --help",
        "stackl get sat",
    }, out
    assert all(re.search(r"\d+\.\dx$", line) for line in rows.values()), out


def test_instance_size_bench_quick_runs_and_prints_figures_and_ratios() -> None:
    out = run_bench("instance_size")
    rows = [
        re.split(r"\s{2,}", line) for line in out.splitlines() if line.endswith("x") and "services" in line
    ]
    assert [row[0] for row in rows] == ["10 services", "40 services"], out
    for row in rows:
        assert row[1].endswith("steps/s")
        assert row[4] == "2", out  # the request's revision and the outcome's, whatever the size
        assert re.fullmatch(r"\d+\.\dx", row[5]), out
