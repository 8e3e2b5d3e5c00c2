"""The docker executor: each job attempt runs `sh /stackl/run.sh` in a container of its image (agents.md §6.4).

The agent prepares the job directory as the local executor does (job.json, variables.json, the 0600
secrets.json, the tool's files) plus the generated `run.sh` (`script.py`), and mounts it, and only it, at
`/stackl`. The container (`stackl-<job_id>-<attempt>`, labelled as in §6.5 plus the agent instance) runs as
the agent's uid:gid unless `--docker-user` says otherwise, with no environment of its own: secrets reach it
only as the mounted file, never as container environment (`docker inspect` shows that). stdout and stderr are
streamed separately, masked. Timeout and cancellation stop the container (SIGTERM, grace, SIGKILL); it is
removed once its logs are read and its exit code known. On start the agent removes the containers its
previous instance left. The Docker SDK is blocking: its calls run in threads.
"""

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import structlog

from stackl import errors
from stackl.agent import outputs, secrets
from stackl.agent.executors import script
from stackl.agent.executors.base import Emit, Executor, Job, LineSink, LineSplitter, Result, Stream
from stackl.agent.tools.base import Tool
from stackl.agent.workdir import WorkDir

log = structlog.get_logger(__name__)

GRACE_S = 30.0  # SIGTERM → SIGKILL (agents.md §5)
PULL_POLICIES = ("always", "missing", "never")
INSTANCE_LABEL = "stackl.io/agent-instance"
MANAGED_BY = "app.kubernetes.io/managed-by"
PullPolicy = Literal["always", "missing", "never"]


@dataclass(frozen=True)
class DockerConfig:
    """How the docker executor runs containers.

    Attributes:
        data_dir: the agent's data directory (`jobs/`, `state/`).
        docker_host: the engine's address (`unix:///…`, `tcp://…`); None: `DOCKER_HOST` or the default socket.
        pull: `always`, `missing` (default) or `never` (`--docker-pull`).
        user: `uid:gid` the container runs as (`--docker-user`); None: the agent's own.
        network: `bridge`, `none`, `host` or a named network (`--docker-network`).
        mounts: extra `host:container[:ro]` bind mounts (`--docker-mount`).
        memory: memory limit, e.g. `512m` (`--docker-memory`).
        cpus: CPU limit, e.g. 1.5 (`--docker-cpus`).
        secret_handler: `plain`, `base64` or a store handler such as `vault` (`--secret-handler`).
        grace_s: SIGTERM → SIGKILL delay when stopping a container.
        keep_workdirs: keep job directories, minus secrets, for debugging (`--keep-workdirs`).
        environ, pass_env: agent variables named in `pass_env` reach the job environment (`--pass-env`).
    """

    data_dir: Path
    docker_host: str | None = None
    pull: PullPolicy = "missing"
    user: str | None = None
    network: str = "bridge"
    mounts: Sequence[str] = ()
    memory: str | None = None
    cpus: float | None = None
    secret_handler: secrets.Handler = "base64"  # noqa: S105 - a handler name, not a secret
    grace_s: float = GRACE_S
    keep_workdirs: bool = False
    environ: dict[str, str] = field(default_factory=dict)
    pass_env: Sequence[str] = ()


def parse_mount(spec: str) -> tuple[str, dict[str, str]]:
    """A `--docker-mount` value `host:container[:ro|rw]` as a docker-py bind.

    Raises:
        ValueError: not of that form, or a relative path.
    """
    parts = spec.split(":")
    mode = "rw"
    if len(parts) == 3 and parts[2] in ("ro", "rw"):
        mode = parts.pop()
    if len(parts) != 2 or not all(part.startswith("/") for part in parts):
        raise ValueError(f"--docker-mount {spec!r}: expected /host/path:/container/path[:ro]")
    if parts[1] == str(script.ROOT) or parts[1].startswith(f"{script.ROOT}/"):
        raise ValueError(f"--docker-mount {spec!r}: {script.ROOT} is the job directory")
    return parts[0], {"bind": parts[1], "mode": mode}


def container_name(job: Job) -> str:
    return f"stackl-{job.job_id}-{job.attempt}"


class DockerExecutor(Executor):
    """Runs each job in a container on a Docker engine; see the module docstring."""

    name = "docker"

    def __init__(self, config: DockerConfig, *, tools: dict[str, Tool] | None = None) -> None:
        secrets.check(config.secret_handler)  # an unknown handler refuses to start (agents.md §8)
        if config.pull not in PULL_POLICIES:
            raise ValueError(f"unknown pull policy {config.pull!r}: use {', '.join(PULL_POLICIES)}")
        self.binds = dict(parse_mount(spec) for spec in config.mounts)
        self.config = config
        self._tools = tools if tools is not None else script.container_tools()
        self._api: Any = None
        self._lock = threading.Lock()
        self.agent = ""
        self.instance_id = ""

    def tools(self) -> list[str]:
        """Any tool an image brings: all of them are advertised."""
        return sorted(self._tools)

    def api(self) -> Any:
        """The Docker Engine API client (docker-py's `APIClient`), made on first use."""
        with self._lock:
            if self._api is None:
                import docker  # type: ignore[import-untyped]  # optional extra stackl[docker], no type hints

                # No client timeout: attach streams and waits last as long as the job.
                base_url = self.config.docker_host or os.environ.get("DOCKER_HOST") or None
                self._api = docker.APIClient(base_url=base_url, timeout=None, version="auto")
            return self._api

    def close(self) -> None:
        """Close the engine client's connections."""
        with self._lock:
            if self._api is not None:
                self._api.close()
                self._api = None

    async def start(self, *, agent: str, instance_id: str, previous_instance_id: str | None) -> None:
        """Learn the agent's name and instance; remove the containers its previous instance left."""
        self.agent, self.instance_id = agent, instance_id
        if previous_instance_id:
            removed = await asyncio.to_thread(self.remove_leftovers, previous_instance_id)
            if removed:
                log.info("docker_leftovers_removed", agent=agent, containers=len(removed))

    def remove_leftovers(self, previous_instance_id: str) -> list[str]:
        """Force-remove the containers labelled with this agent and `previous_instance_id`; their names."""
        api = self.api()
        labels = [
            f"{MANAGED_BY}=stackl",
            f"stackl.io/agent={self.agent}",
            f"{INSTANCE_LABEL}={previous_instance_id}",
        ]
        names = []
        for container in api.containers(all=True, filters={"label": labels}):
            api.remove_container(container["Id"], force=True)
            names += [name.lstrip("/") for name in container.get("Names") or []]
        return names

    async def run(self, job: Job, *, emit: Emit, cancel: asyncio.Event) -> Result:
        async def body(handled: dict[str, Any], sink: LineSink) -> Result:
            return await self._run(job, handled, sink, cancel)

        return await script.guarded_run(job, emit, self.config.secret_handler, body)

    async def _run(self, job: Job, handled: dict[str, Any], sink: LineSink, cancel: asyncio.Event) -> Result:
        image = job.invocation.image
        if not image:
            raise errors.ExecutionError("invocation has no image")
        tool = self._tools.get(job.tool)
        if tool is None:
            raise errors.ExecutionError(f"tool {job.tool} is not available on this agent")
        await asyncio.to_thread(self._ensure_image, image)
        workdir = await asyncio.to_thread(
            WorkDir.create,
            self.config.data_dir,
            job,
            variables=tool.encode_variables(job.provisioning_parameters),
            secrets=tool.encode_variables(handled),
        )
        prepared: script.Prepared | None = None
        succeeded = False
        try:
            env = {n: self.config.environ[n] for n in self.config.pass_env if n in self.config.environ}
            prepared = await asyncio.to_thread(
                script.prepare,
                tool,
                job,
                workdir,
                handled,
                data_dir=self.config.data_dir,
                layout=script.DOCKER,
                extra_env=env,
            )
            for note in prepared.notes:
                await sink.system(note)
            await sink.system(f"{tool.name}: container {container_name(job)}, image {image}")
            result = await self._container(job, workdir, sink, cancel)
            if job.action != "delete":
                document = await asyncio.to_thread(tool.collect_outputs, prepared.ctx)
                collected = outputs.apply(document, job.invocation.outputs, sink.masker)
                for note in collected.notes:
                    await sink.system(note)
                result = Result(
                    "READY",
                    outputs=collected.values,
                    hosts=collected.hosts,
                    duration_s=result.duration_s,
                    exit_code=0,
                )
            succeeded = True
            return result
        finally:
            await asyncio.to_thread(self._clean_up, tool, workdir, prepared, succeeded)

    def _clean_up(
        self, tool: Tool, workdir: WorkDir, prepared: script.Prepared | None, succeeded: bool
    ) -> None:
        try:
            if prepared is not None:
                tool.finish(prepared.ctx, succeeded=succeeded)
        finally:
            extra = [workdir.path(script.PLACED_DIR)]
            if prepared is not None:
                extra += [workdir.path(name) for name in prepared.secret_files]
                extra += tool.secret_paths(prepared.ctx)
            workdir.remove_secrets(extra)
            if not self.config.keep_workdirs:
                workdir.remove()

    def _ensure_image(self, image: str) -> None:
        """Apply the pull policy; raise ExecutionError with the message of agents.md §6.4."""
        import docker

        api = self.api()
        present = True
        if self.config.pull != "always":
            try:
                api.inspect_image(image)
            except docker.errors.ImageNotFound:
                present = False
            except docker.errors.DockerException as exc:
                raise errors.ExecutionError(f"docker engine error: {_reason(exc)}") from exc
        if present and self.config.pull != "always":
            return
        if self.config.pull == "never":
            raise errors.ExecutionError(f"image {image} is not present (pull policy never)")
        try:
            api.pull(image)
            api.inspect_image(image)
        except docker.errors.DockerException as exc:
            raise errors.ExecutionError(f"image {image} cannot be pulled: {_reason(exc)}") from exc

    def _create(self, job: Job, workdir: WorkDir) -> str:
        import docker

        api = self.api()
        name = container_name(job)
        with contextlib.suppress(docker.errors.NotFound):  # a left-over of this very attempt
            api.remove_container(name, force=True)
        labels = script.base_labels(job, self.agent) | {INSTANCE_LABEL: self.instance_id}
        host_config = api.create_host_config(
            binds={str(workdir.root): {"bind": str(script.ROOT), "mode": "rw"}, **self.binds},
            network_mode=self.config.network,
            mem_limit=self.config.memory,
            nano_cpus=int(self.config.cpus * 1e9) if self.config.cpus else None,
        )
        created = api.create_container(
            job.invocation.image,
            entrypoint=["sh"],  # an image's own entrypoint (e.g. `terraform`) must not wrap the script
            command=[str(script.ROOT / script.RUN_SCRIPT)],
            name=name,
            user=self.config.user or f"{os.getuid()}:{os.getgid()}",
            labels=labels,  # working dir: run.sh changes into working_directory (the engine would create it)
            host_config=host_config,
            use_config_proxy=False,  # nothing from the agent's environment or docker config
        )
        return str(created["Id"])

    async def _container(self, job: Job, workdir: WorkDir, sink: LineSink, cancel: asyncio.Event) -> Result:
        """Create, start, stream, wait for and remove the container; READY (no outputs yet) or raise."""
        import docker

        api = self.api()
        try:
            container = await asyncio.to_thread(self._create, job, workdir)
        except docker.errors.DockerException as exc:
            raise errors.ExecutionError(f"container cannot be created: {_reason(exc)}") from exc
        started = time.monotonic()
        streaming: asyncio.Task[None] | None = None
        try:
            # Attached before the start, so no early output is missed.
            frames = await asyncio.to_thread(
                api.attach, container, stdout=True, stderr=True, stream=True, logs=True, demux=True
            )
            queue: asyncio.Queue[tuple[Stream, bytes] | None] = asyncio.Queue()
            loop = asyncio.get_running_loop()
            threading.Thread(target=_pump, args=(frames, queue, loop), daemon=True).start()
            streaming = asyncio.create_task(_stream(queue, sink))
            await asyncio.to_thread(api.start, container)
            started = time.monotonic()
            timeout_s = job.invocation.timeout
            stopped = await self._wait(container, cancel, started + timeout_s)
            await streaming
            state = (await asyncio.to_thread(api.inspect_container, container))["State"]
        except docker.errors.DockerException as exc:
            raise errors.ExecutionError(f"docker engine error: {_reason(exc)}") from exc
        finally:
            with contextlib.suppress(docker.errors.DockerException):
                await asyncio.shield(asyncio.to_thread(api.remove_container, container, force=True))
            if streaming is not None and not streaming.done():
                streaming.cancel()
        duration = time.monotonic() - started
        if stopped == "timeout":
            raise script.Stopped(f"timed out after {timeout_s:g} s", timed_out=True)
        if stopped == "cancel":
            raise script.Stopped("cancelled", timed_out=False)
        code = int(state.get("ExitCode") or 0)
        if code != 0:
            status = workdir.path(script.STATUS_FILE)
            message = status.read_text(errors="replace").strip() if status.exists() else ""
            if not message or state.get("OOMKilled"):
                reason = " (OOMKilled)" if state.get("OOMKilled") else ""
                message = f"container exited with code {code}{reason}"
            raise script.Exited(message.splitlines()[0], code)
        return Result("READY", duration_s=duration, exit_code=0)

    async def _wait(self, container: str, cancel: asyncio.Event, deadline: float) -> str | None:
        """None when the container exited by itself, else "timeout" or "cancel" (and it was stopped)."""
        api = self.api()
        exited = _own_thread(api.wait, container)  # lasts the whole job: not in the shared thread pool
        cancelled = asyncio.ensure_future(cancel.wait())
        try:
            done, _ = await asyncio.wait(
                {exited, cancelled},
                timeout=max(deadline - time.monotonic(), 0.0),
                return_when=asyncio.FIRST_COMPLETED,
            )
            if exited in done:
                exited.result()
                return None
            await asyncio.to_thread(api.stop, container, timeout=max(int(self.config.grace_s), 0))
            await exited
            return "cancel" if cancelled in done else "timeout"
        finally:
            cancelled.cancel()
            if not exited.done():  # cancelled from outside: the caller removes the container
                exited.cancel()


def _own_thread(function: Any, *args: Any) -> "asyncio.Future[Any]":
    """Run a blocking call in a thread of its own; its result as a future of the running loop."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(outcome: Any, failed: bool) -> None:
        if future.done():
            return
        if failed:
            future.set_exception(outcome)
        else:
            future.set_result(outcome)

    def target() -> None:
        try:
            outcome, failed = function(*args), False
        except Exception as exc:
            outcome, failed = exc, True
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(settle, outcome, failed)

    threading.Thread(target=target, daemon=True).start()
    return future


def _pump(
    frames: Any, queue: "asyncio.Queue[tuple[Stream, bytes] | None]", loop: asyncio.AbstractEventLoop
) -> None:
    """Thread: move demultiplexed (stdout, stderr) frames from the attach stream to the event loop."""
    files = _attach_files(frames)
    try:
        for out, err in frames:
            if out:
                loop.call_soon_threadsafe(queue.put_nowait, ("stdout", out))
            if err:
                loop.call_soon_threadsafe(queue.put_nowait, ("stderr", err))
    except Exception as exc:  # the engine went away: the wait reports it, the stream just ends
        log.warning("docker_attach_failed", error=type(exc).__name__)
    finally:
        with contextlib.suppress(Exception):
            frames.close()
        for file in files:  # docker-py leaves the upgraded connection's socket open once the stream ends
            with contextlib.suppress(OSError):
                file.close()
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(queue.put_nowait, None)


def _attach_files(frames: Any) -> list[Any]:
    """The reader and socket under docker-py's attach stream (where its `_get_raw_response_socket` looks)."""
    try:
        reader = frames._response.raw._fp.fp
        return [reader, reader.raw._sock]
    except AttributeError:
        return []


async def _stream(queue: "asyncio.Queue[tuple[Stream, bytes] | None]", sink: LineSink) -> None:
    splitters: dict[Stream, LineSplitter] = {
        "stdout": LineSplitter(sink.keep_bytes()),
        "stderr": LineSplitter(sink.keep_bytes()),
    }
    while (item := await queue.get()) is not None:
        stream, chunk = item
        for text, dropped in splitters[stream].feed(chunk):
            await sink.line(stream, text, dropped_bytes=dropped)
    for stream, splitter in splitters.items():
        for text, dropped in splitter.flush():
            await sink.line(stream, text, dropped_bytes=dropped)


def _reason(exc: Exception) -> str:
    explanation = getattr(exc, "explanation", None)
    text = str(explanation or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
