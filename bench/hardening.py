"""What a hostile caller can do to a real `stackl server` (issue 15, defects 3, 4 and 5), measured.

Three attacks against one server started with auth on, each with the figure that shows whether it hurts:

- **YAML**: one authenticated POST of a ~1 MB YAML document, and the worst `/healthz` latency seen while it
  is parsed (a parse on the event loop stalls every other request); the same document as JSON is the
  row to compare with (what storing a 1 MB document costs, whatever its format);
- **body**: a 200 MB POST to `/agents/register` without a token, sent with a `Content-Length` and chunked, and
  how much the server's peak RSS (`VmHWM`) grew before it answered;
- **connections**: 300 idle and 300 slow-loris connections (one header byte a second): how many are still
  open after the wait, whether `/healthz` answers meanwhile, then the same with the open-file limit lowered
  below the number of connections, and how many accept-error lines the server logged.

The baseline is the same run's idle `/healthz` latency. Run it against an older tree with
``PYTHONPATH=<old>/src python -m bench.hardening`` to get the "before" figures.
"""

import argparse
import asyncio
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml

from bench import harness
from bench.servers import clean_env, free_port

MIB = 1024 * 1024


@dataclass
class Server:
    """A running `stackl server` with auth on."""

    proc: subprocess.Popen[bytes]
    url: str
    port: int
    token: str
    log: Path

    def rss_hwm_kib(self) -> int:
        """The process's peak resident set size so far (``VmHWM``), in KiB."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        return 0

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))


@contextmanager
def server(tmp: Path, *, nofile: int | None = None, env: dict[str, str] | None = None) -> Iterator[Server]:
    """Start `stackl server --auth` (no worker, no embedded agent) and wait for `/healthz`."""
    port = free_port()
    data = tmp / f"data-{port}"
    log = tmp / f"server-{port}.log"
    extra = {"STACKL_SERVER__WORKER": "false", "STACKL_SERVER__AGENT": "false", **(env or {})}

    def limit() -> None:
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    args = [sys.executable, "-m", "stackl", "server", "--port", str(port), "--data-dir", str(data), "--auth"]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*args, "--log-level", "warning"],
            env=clean_env(**extra),
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=limit,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"server did not start: {log.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    token_file = data / "admin.token"
                    if token_file.exists():
                        break
            time.sleep(0.1)
        yield Server(proc, url, port, token_file.read_text().strip(), log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Probe:
    """``/healthz`` latencies seen by a poller (a fresh connection each time), and its failures."""

    latencies: list[float] = field(default_factory=list)
    failures: int = 0

    @property
    def worst(self) -> float:
        return max(self.latencies, default=float("nan"))


async def probe(url: str, stop: asyncio.Event, found: Probe, *, timeout_s: float = 30.0) -> None:
    while not stop.is_set():
        start = time.perf_counter()
        try:
            async with httpx.AsyncClient(timeout=timeout_s) as client:
                response = await client.get(f"{url}/healthz")
            if response.status_code != 200:
                found.failures += 1
        except httpx.HTTPError:
            found.failures += 1
        found.latencies.append(time.perf_counter() - start)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.1)


def yaml_document(size: int) -> bytes:
    """A zone whose params make it about ``size`` bytes of YAML."""
    lines = ["type: zone", "name: big", "category: configs", "params:"]
    total, index = 0, 0
    while total < size:
        line = f"  key_{index:07d}: [value-{index}, {index}, {{nested: text-{index}}}]"
        lines.append(line)
        total += len(line) + 1
        index += 1
    return ("\n".join(lines) + "\n").encode()


async def document_post(srv: Server, size: int, *, as_yaml: bool) -> list[object]:
    """POST a ~``size`` document as YAML (or the same document as JSON) while ``/healthz`` is polled."""
    body = yaml_document(size)
    media = "application/yaml"
    if not as_yaml:
        body, media = json.dumps(yaml.safe_load(body)).encode(), "application/json"
    stop, found = asyncio.Event(), Probe()
    async with asyncio.TaskGroup() as group:
        group.create_task(probe(srv.url, stop, found))
        await asyncio.sleep(0.5)
        start = time.perf_counter()
        async with httpx.AsyncClient(timeout=300) as client:
            response = await client.post(
                f"{srv.url}/documents/{'zone' if as_yaml else 'environment'}",
                content=body if as_yaml else body.replace(b'"zone"', b'"environment"', 1),
                headers={"Authorization": f"Bearer {srv.token}", "Content-Type": media},
            )
        took = time.perf_counter() - start
        await asyncio.sleep(0.5)
        stop.set()
    kind = "YAML" if as_yaml else "JSON (same document)"
    return [f"{kind} {len(body) / MIB:.1f} MB POST", response.status_code, took, found.worst, found.failures]


async def body_attack(srv: Server, size: int, *, chunked: bool) -> list[object]:
    """Send ``size`` bytes unauthenticated, 1 MiB at a time, until the server answers or closes."""
    before = srv.rss_hwm_kib()
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}"
    writer.write(
        f"POST /agents/register HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{framing}\r\n\r\n".encode()
    )
    chunk = b"[" + b"1," * (MIB // 2 - 1) + b"1"
    sent = 0
    answer = asyncio.create_task(reader.read(200))
    start = time.perf_counter()
    try:
        while sent < size and not answer.done():
            piece = chunk[: min(len(chunk), size - sent)]
            writer.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n" if chunked else piece)
            await writer.drain()
            sent += len(piece)
        if chunked and not answer.done():
            writer.write(b"0\r\n\r\n")
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    try:
        head = await asyncio.wait_for(answer, 120)
    except (TimeoutError, ConnectionError):
        head = b""
    took = time.perf_counter() - start
    writer.close()
    status = head.split(b" ")[1].decode() if head.startswith(b"HTTP/") else "closed"
    grown = (srv.rss_hwm_kib() - before) / 1024
    kind = "chunked" if chunked else "Content-Length"
    return [f"{size // MIB} MB POST, no token, {kind}", status, took, f"{sent / MIB:.0f} MB sent", grown]


async def hold(port: int, *, loris: bool, closed: list[float], start: float) -> None:
    """One connection that sends nothing (idle) or one header byte a second (slow loris) until closed."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        closed.append(0.0)
        return
    try:
        if loris:
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            while True:
                writer.write(b"X")
                await writer.drain()
                with contextlib.suppress(TimeoutError):
                    if await asyncio.wait_for(reader.read(1024), 1.0) == b"":
                        break
        else:
            while await reader.read(1024):
                pass
        closed.append(time.perf_counter() - start)
    except (ConnectionError, OSError):
        closed.append(time.perf_counter() - start)
    finally:
        writer.close()


async def connection_attack(srv: Server, count: int, wait_s: float, label: str) -> list[object]:
    closed: list[float] = []
    stop, found = asyncio.Event(), Probe()
    start = time.perf_counter()
    holders = [
        asyncio.create_task(hold(srv.port, loris=i % 2 == 1, closed=closed, start=start))
        for i in range(count)
    ]
    prober = asyncio.create_task(probe(srv.url, stop, found, timeout_s=5.0))
    await asyncio.sleep(wait_s)
    fds = srv.open_fds()
    stop.set()
    await prober
    for task in holders:
        task.cancel()
    await asyncio.gather(*holders, return_exceptions=True)
    still_open = count - len(closed)
    accept_errors = sum(1 for line in srv.log.read_text(errors="replace").splitlines() if "accept" in line)
    return [label, still_open, fds, found.worst, found.failures, accept_errors]


async def main(quick: bool, wait_s: float) -> None:
    harness.header("hostile callers against stackl server (issue 15: defects 3, 4, 5)")
    yaml_size, body_size, conns = (100_000, 20 * MIB, 60) if quick else (1_000_000, 200 * MIB, 600)
    wait_s = 3.0 if quick else wait_s
    timeouts = {  # the 1 MB YAML document must fit (its JSON is a little larger than 1 MiB)
        "STACKL_SERVER__HEADER_TIMEOUT_S": "1" if quick else "5",
        "STACKL_SERVER__KEEP_ALIVE_TIMEOUT_S": "5",
        "STACKL_SERVER__MAX_DOCUMENT_BYTES": str(4 * MIB),
    }
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        with server(tmp, env=timeouts) as srv:
            idle = Probe()
            stop = asyncio.Event()
            task = asyncio.create_task(probe(srv.url, stop, idle))
            await asyncio.sleep(1.0)
            stop.set()
            await task
            baseline = harness.percentile(idle.latencies, 50)
            print(f"\nbaseline: idle /healthz median {baseline * 1000:.1f} ms")
            print("\n## YAML body (authenticated)")
            rows = [await document_post(srv, yaml_size, as_yaml=flag) for flag in (True, False)]
            for row in rows:
                row.append(f"{row[3] / baseline:.0f}x baseline")  # type: ignore[operator]
            harness.table(rows, ["case", "status", "POST s", "worst /healthz s", "probe failures", "ratio"])
            print("\n## unauthenticated body")
            rows = [await body_attack(srv, body_size, chunked=chunked) for chunked in (False, True)]
            harness.table(rows, ["case", "status", "s", "sent", "peak RSS growth MB"])
            print(f"\n## {conns // 2} idle + {conns // 2} slow-loris connections, {wait_s:.0f} s")
            limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            rows = [await connection_attack(srv, conns, wait_s, f"open-file limit {limit}")]
        with server(tmp, nofile=conns // 2 + 64, env=timeouts) as srv:
            rows.append(await connection_attack(srv, conns, wait_s, f"open-file limit {conns // 2 + 64}"))
        harness.table(
            rows,
            ["case", "still open", "server fds", "worst /healthz s", "probe failures", "accept log lines"],
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, short waits (the bench test)")
    parser.add_argument("--wait", type=float, default=15.0, help="seconds to hold the connections")
    args = parser.parse_args()
    asyncio.run(main(args.quick, args.wait))
