"""How long a ``stackl`` command takes from the shell, against the interpreter's own start as the baseline.

Every CLI call pays for the imports it needs before it does anything; operators feel that on each command and
on each tab completion. Rows: ``python -c pass`` (the baseline: what no Python CLI can beat), ``stackl
--help``, ``stackl get --help``, and ``stackl get sat`` against a real server on SQLite (the request itself is a
few milliseconds of that). Each row: best and median of the runs, and the ratio of its best to the baseline's.

    python -m bench.cli            # 10 runs per row
    python -m bench.cli --quick    # 3 runs, for the smoke test
"""

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.harness import header, measure, table
from bench.servers import clean_env, start_server, stop


def _run(args: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({done.returncode}): {done.stderr.decode()[-500:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 runs per row")
    options = parser.parse_args()
    runs = 3 if options.quick else 10
    header(f"stackl command start-up, {runs} runs per row")
    stackl = [sys.executable, "-m", "stackl"]
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_server(Path(tmp) / "data", None)
        try:
            env = clean_env(STACKL_URL=url, HOME=tmp)
            cases = [
                ("python -c pass (baseline)", [sys.executable, "-c", "pass"]),
                ("stackl --help", [*stackl, "--help"]),
                ("stackl get --help", [*stackl, "get", "--help"]),
                ("stackl get sat", [*stackl, "get", "sat"]),
            ]
            rows = []
            baseline = 0.0
            for label, args in cases:
                timing = measure(lambda a=args: _run(a, env), repeat=runs, warmup=1)  # type: ignore[misc]
                baseline = baseline or timing.best
                rows.append(
                    [label, timing.best * 1000, timing.median * 1000, f"{timing.best / baseline:.1f}x"]
                )
                print(f"  {label}: best {timing.best * 1000:.0f} ms", flush=True)
        finally:
            stop(proc)
    table(rows, ["command", "best ms", "median ms", "vs python"])


if __name__ == "__main__":
    main()
