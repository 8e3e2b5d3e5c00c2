"""bench/policy_dos keeps running: its quick mode completes and prints its figures (no timing asserted)."""

from tests.e2e.test_bench import run_bench


def test_policy_dos_bench_quick_runs_and_prints_the_probes() -> None:
    out = run_bench("policy_dos")
    assert "GET /healthz (no token)" in out, out
    assert "right after it" in out, out
