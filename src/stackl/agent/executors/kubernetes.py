"""The kubernetes executor: each job attempt is a Kubernetes Job running `sh /stackl/in/run.sh` (agents.md §6.5).

One attempt is three objects named after `<id>` (the lower-cased job id plus `-a<attempt>`): a Secret
`stackl-<id>-s` (the secret files), a ConfigMap `stackl-<id>-f` (run.sh and the other files the agent
writes) and a Job `stackl-<id>`. The ConfigMap and Secret are created first, then the Job, then both get an
ownerReference to it. The pod mounts an emptyDir at `/stackl`, the ConfigMap at `/stackl/in` and the Secret
at `/stackl/secrets` (read-only, 0440, group from the pod's `fsGroup`); secrets are never in the ConfigMap
nor in pod environment. Labels carry the identity of the job (values shortened to valid label values, the full
value then in an annotation of the same key) and the agent; an annotation names the agent instance.

The agent polls the Job and its pod (every `poll_s`), follows the main container's log and streams it
masked, taking out the `::stackl-outputs::` line (the tool's output document; never stored nor streamed)
and the `::stackl-status::` line (which step failed). Outcomes: Job `Complete` → READY and the Job is
deleted (background propagation); a failed container → FAILED, the Job, pod and ConfigMap kept for
inspection until `ttlSecondsAfterFinished`; `DeadlineExceeded`, cancellation or the agent's own deadline →
the Job deleted with foreground propagation. The Secret goes as soon as the pod has terminated. The official
client is blocking: its calls run in threads.
"""

import asyncio
import base64
import contextlib
import hashlib
import math
import re
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import structlog

from stackl import errors
from stackl.agent import outputs, secrets
from stackl.agent.executors import script
from stackl.agent.executors.base import Emit, Executor, Job, LineSink, LineSplitter, Result
from stackl.agent.tools import terraform
from stackl.agent.tools.base import Tool
from stackl.agent.workdir import WorkDir

log = structlog.get_logger(__name__)

INSTANCE_ANNOTATION = "stackl.io/agent-instance"
MANAGED_BY = "app.kubernetes.io/managed-by"
IN_CLUSTER_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
PULL_POLICIES = {"always": "Always", "missing": "IfNotPresent", "never": "Never"}
PULL_ERRORS = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName")
SECRET_MODE = 0o440
READ_CHUNK = 64 * 1024
OUTPUTS_LINE_MAX = 1024 * 1024 + len(script.OUTPUTS_MARKER) + 16
LOG_WAIT_S = 30.0  # after the pod ended, how long the log may still take to arrive
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
_NOT_DNS = re.compile(r"[^a-z0-9-]")


@dataclass(frozen=True)
class KubernetesConfig:
    """How the kubernetes executor runs Jobs.

    Attributes:
        data_dir: the agent's data directory (the job directory is prepared there, then removed).
        namespace: where the objects go (`--k8s-namespace`); None: the agent's own (in cluster) or the
            kubeconfig context's, else `default`.
        kubeconfig: a kubeconfig file; None with `in_cluster` false: the client's default (`~/.kube/config`).
        context: the kubeconfig context; None: its current one.
        in_cluster: use the pod's service account (`--k8s-in-cluster`).
        configuration: a ready `kubernetes.client.Configuration` (tests; wins over the above).
        ttl_s: `ttlSecondsAfterFinished` of the Jobs (`--k8s-ttl`).
        service_account: the Jobs' service account (`--k8s-job-service-account`), never the agent's own.
        automount_token: mount that account's token into the pod.
        pull: `always`, `missing` or `never` → imagePullPolicy `Always`, `IfNotPresent`, `Never`.
        image_pull_secrets: names of Secrets in the namespace used to pull images.
        requests, limits: container resources, e.g. {"cpu": "500m", "memory": "512Mi"}.
        fs_group: the pod's `fsGroup`: the group that may read the mounted secret files.
        pending_timeout_s: an unschedulable pod fails the job after this long (`--k8s-pending-timeout`).
        pull_timeout_s: an image pull error lasting this long fails the job.
        poll_s: how often the Job and its pod are read.
        grace_s: pod termination grace when a Job is stopped.
        request_timeout_s: the timeout of each API call (log following excepted).
        secret_handler: `plain`, `base64` or a store handler such as `vault` (`--secret-handler`).
        keep_workdirs: keep the prepared job directories, minus secrets (`--keep-workdirs`).
    """

    data_dir: Path
    namespace: str | None = None
    kubeconfig: Path | None = None
    context: str | None = None
    in_cluster: bool = False
    configuration: Any = None
    ttl_s: int = 3600
    service_account: str = "default"
    automount_token: bool = False
    pull: Literal["always", "missing", "never"] = "missing"
    image_pull_secrets: Sequence[str] = ()
    requests: Mapping[str, str] = field(default_factory=dict)
    limits: Mapping[str, str] = field(default_factory=dict)
    fs_group: int = 1000
    pending_timeout_s: float = 300.0
    pull_timeout_s: float = 60.0
    poll_s: float = 2.0
    grace_s: int = 30
    request_timeout_s: float = 30.0
    secret_handler: secrets.Handler = "base64"  # noqa: S105 - a handler name, not a secret
    keep_workdirs: bool = False


def label_value(value: str) -> str:
    """`value` if it is a valid label value, else a valid one made from it (≤ 63, hash-suffixed)."""
    if len(value) <= 63 and _LABEL_VALUE.fullmatch(value):
        return value
    digest = hashlib.sha256(value.encode("utf-8")).hexdigest()[:8]
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "-", value)[:54].strip("-_.")
    return f"{cleaned}-{digest}" if cleaned else digest


def metadata_labels(full: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """Labels with valid values, and the annotations keeping the full value of each shortened one."""
    labels = {key: label_value(value) for key, value in full.items()}
    annotations = {key: value for key, value in full.items() if labels[key] != value}
    return labels, annotations


def object_id(job: Job) -> str:
    """`<id>` of the object names: the lower-cased job id plus `-a<attempt>`, as a DNS label part."""
    return f"{_NOT_DNS.sub('-', job.job_id.lower())}-a{job.attempt}"


def file_key(relative: str) -> str:
    """The ConfigMap or Secret key of a job directory file (keys hold no `/`)."""
    return relative.replace("/", "__")


def job_manifest(
    job: Job,
    config: KubernetesConfig,
    *,
    name: str,
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
    inputs: Sequence[str],
    secret_files: Sequence[str],
) -> dict[str, Any]:
    """The Job object of one attempt (agents.md §6.5)."""
    container: dict[str, Any] = {
        "name": job.tool,
        "image": job.invocation.image,
        "imagePullPolicy": PULL_POLICIES[config.pull],
        "command": ["sh", str(script.KUBERNETES.inputs / script.RUN_SCRIPT)],
        "volumeMounts": [
            {"name": "work", "mountPath": str(script.ROOT)},
            {"name": "files", "mountPath": str(script.KUBERNETES.inputs), "readOnly": True},
            {"name": "secrets", "mountPath": str(script.KUBERNETES.secrets), "readOnly": True},
        ],
    }
    resources = {
        kind: dict(values)
        for kind, values in (("requests", config.requests), ("limits", config.limits))
        if values
    }
    if resources:
        container["resources"] = resources
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "serviceAccountName": config.service_account,
        "automountServiceAccountToken": config.automount_token,
        "securityContext": {"fsGroup": config.fs_group},
        "terminationGracePeriodSeconds": config.grace_s,
        "containers": [container],
        "volumes": [
            {"name": "work", "emptyDir": {}},
            {
                "name": "files",
                "configMap": {
                    "name": f"{name}-f",
                    "items": [{"key": file_key(item), "path": item} for item in inputs],
                },
            },
            {
                "name": "secrets",
                "secret": {
                    "secretName": f"{name}-s",
                    "defaultMode": SECRET_MODE,
                    "items": [{"key": file_key(item), "path": item} for item in secret_files],
                },
            },
        ],
    }
    if config.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": secret} for secret in config.image_pull_secrets]
    metadata = {"labels": dict(labels), "annotations": dict(annotations)}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, **metadata},
        "spec": {
            "backoffLimit": 0,  # STACKL retries, not Kubernetes
            "activeDeadlineSeconds": max(math.ceil(job.invocation.timeout), 1),
            "ttlSecondsAfterFinished": config.ttl_s,
            "template": {"metadata": metadata, "spec": pod_spec},
        },
    }


@dataclass
class _Log:
    """What the followed log carried besides lines: the outputs document and the failed step."""

    outputs: str | None = None
    outputs_too_big: bool = False
    status: str | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class _Watch:
    """Where the watch of one Job stands."""

    name: str
    container: str
    pod: str | None = None
    following: bool = False
    secret_deleted: bool = False
    pull_error_since: float | None = None
    unschedulable_since: float | None = None
    exit_seen: bool = False  # the container exited non-zero and the Job had no verdict yet


class KubernetesExecutor(Executor):
    """Runs each job as a Kubernetes Job; see the module docstring."""

    name = "kubernetes"

    def __init__(self, config: KubernetesConfig, *, tools: dict[str, Tool] | None = None) -> None:
        secrets.check(config.secret_handler)  # an unknown handler refuses to start (agents.md §8)
        if config.pull not in PULL_POLICIES:
            raise ValueError(f"unknown pull policy {config.pull!r}: use {', '.join(PULL_POLICIES)}")
        self.config = config
        self._tools = tools if tools is not None else script.container_tools()
        self._lock = threading.Lock()
        self._client: Any = None
        self._namespace = config.namespace
        self.agent = ""
        self.instance_id = ""

    def tools(self) -> list[str]:
        """Any tool an image brings: all of them are advertised."""
        return sorted(self._tools)

    # --- client -----------------------------------------------------------------------------------------
    def client(self) -> Any:
        """The `kubernetes.client.ApiClient`, made on first use."""
        with self._lock:
            if self._client is None:
                from kubernetes import client

                config = _kube_config()
                configuration = self.config.configuration
                if configuration is None:
                    configuration = client.Configuration()
                    if self.config.in_cluster:
                        config.load_incluster_config(client_configuration=configuration)
                    else:
                        config.load_kube_config(
                            config_file=str(self.config.kubeconfig) if self.config.kubeconfig else None,
                            context=self.config.context,
                            client_configuration=configuration,
                        )
                self._client = client.ApiClient(configuration)
            return self._client

    def namespace(self) -> str:
        """`--k8s-namespace`, else the agent's own: the service account's (in cluster) or the context's."""
        if self._namespace is None:
            self._namespace = self._default_namespace()
        return self._namespace

    def _default_namespace(self) -> str:
        if self.config.in_cluster and IN_CLUSTER_NAMESPACE.exists():
            return IN_CLUSTER_NAMESPACE.read_text().strip() or "default"
        if self.config.configuration is None and not self.config.in_cluster:
            config = _kube_config()
            with contextlib.suppress(Exception):  # no kubeconfig contexts: the default namespace
                contexts, current = config.list_kube_config_contexts(
                    config_file=str(self.config.kubeconfig) if self.config.kubeconfig else None
                )
                chosen = next((c for c in contexts if c["name"] == self.config.context), current)
                return str(chosen["context"].get("namespace") or "default")
        return "default"

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def _apis(self) -> tuple[Any, Any]:
        from kubernetes import client

        api_client = self.client()
        return client.CoreV1Api(api_client), client.BatchV1Api(api_client)

    # --- start ------------------------------------------------------------------------------------------
    async def start(self, *, agent: str, instance_id: str, previous_instance_id: str | None) -> None:
        """Learn the agent's name and instance; delete the objects its previous instance left."""
        self.agent, self.instance_id = agent, instance_id
        if previous_instance_id:
            removed = await asyncio.to_thread(self.remove_leftovers, previous_instance_id)
            if removed:
                log.info("kubernetes_leftovers_removed", agent=agent, objects=len(removed))

    def remove_leftovers(self, previous_instance_id: str) -> list[str]:
        """Delete the Jobs, ConfigMaps and Secrets of this agent whose annotation names that instance."""
        core, batch = self._apis()
        namespace = self.namespace()
        selector = f"{MANAGED_BY}=stackl,stackl.io/agent={label_value(self.agent)}"
        timeout = self.config.request_timeout_s
        removed: list[str] = []
        kinds = (
            ("Job", batch.list_namespaced_job, batch.delete_namespaced_job),
            ("ConfigMap", core.list_namespaced_config_map, core.delete_namespaced_config_map),
            ("Secret", core.list_namespaced_secret, core.delete_namespaced_secret),
        )
        for kind, list_objects, delete in kinds:
            found = list_objects(namespace, label_selector=selector, _request_timeout=timeout)
            for item in found.items:
                if (item.metadata.annotations or {}).get(INSTANCE_ANNOTATION) != previous_instance_id:
                    continue
                with contextlib.suppress(*_api_exception()):
                    delete(
                        item.metadata.name,
                        namespace,
                        propagation_policy="Background",
                        _request_timeout=timeout,
                    )
                    removed.append(f"{kind}/{item.metadata.name}")
        return removed

    # --- run --------------------------------------------------------------------------------------------
    async def run(self, job: Job, *, emit: Emit, cancel: asyncio.Event) -> Result:
        async def body(handled: dict[str, Any], sink: LineSink) -> Result:
            return await self._run(job, handled, sink, cancel)

        return await script.guarded_run(job, emit, self.config.secret_handler, body)

    async def _run(self, job: Job, handled: dict[str, Any], sink: LineSink, cancel: asyncio.Event) -> Result:
        if not job.invocation.image:
            raise errors.ExecutionError("invocation has no image")
        tool = self._tools.get(job.tool)
        if tool is None:
            raise errors.ExecutionError(f"tool {job.tool} is not available on this agent")
        workdir = await asyncio.to_thread(
            WorkDir.create,
            self.config.data_dir,
            job,
            variables=tool.encode_variables(job.provisioning_parameters),
            secrets=tool.encode_variables(handled),
        )
        name = f"stackl-{object_id(job)}"
        created = False
        try:
            prepared = await asyncio.to_thread(
                script.prepare,
                tool,
                job,
                workdir,
                handled,
                data_dir=self.config.data_dir,
                layout=script.KUBERNETES,
            )
            for note in prepared.notes:
                await sink.system(note)
            if (
                tool.name in ("terraform", "tofu")
                and terraform.BACKEND_PARAMETER not in job.provisioning_parameters
            ):
                note = (
                    f"{tool.name}: no {terraform.BACKEND_PARAMETER}: unless the code has a remote backend,"
                    " the state is lost with the pod"
                )
                log.warning("kubernetes_terraform_state_lost", job_id=job.job_id)
                await sink.system(note)
            files = await asyncio.to_thread(_read_files, workdir, prepared)
            await asyncio.to_thread(workdir.remove_secrets, [workdir.path(n) for n in prepared.secret_files])
            await sink.system(f"{tool.name}: Job {self.namespace()}/{name}, image {job.invocation.image}")
            created = True
            await asyncio.to_thread(self._create, job, name, prepared, files)
            result = await self._watch(job, name, sink, cancel, workdir, tool, prepared)
            return result
        finally:
            if created:
                await asyncio.shield(asyncio.to_thread(self._delete_secret, f"{name}-s"))
            await asyncio.to_thread(self._clean_up, workdir)

    def _clean_up(self, workdir: WorkDir) -> None:
        workdir.remove_secrets([workdir.path(script.PLACED_DIR)])
        if not self.config.keep_workdirs:
            workdir.remove()

    def _create(self, job: Job, name: str, prepared: script.Prepared, files: dict[str, bytes]) -> None:
        """Secret and ConfigMap, then the Job, then the Job's ownerReference on both."""
        core, batch = self._apis()
        namespace = self.namespace()
        timeout = self.config.request_timeout_s
        labels, annotations = metadata_labels(script.base_labels(job, self.agent))
        annotations[INSTANCE_ANNOTATION] = self.instance_id
        metadata = {"labels": labels, "annotations": annotations}
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": f"{name}-s", **metadata},
            "type": "Opaque",
            "data": {
                file_key(item): base64.b64encode(files[item]).decode("ascii")
                for item in prepared.secret_files
            },
        }
        text: dict[str, str] = {}
        binary: dict[str, str] = {}
        for item in prepared.inputs:
            try:
                text[file_key(item)] = files[item].decode("utf-8")
            except UnicodeDecodeError:
                binary[file_key(item)] = base64.b64encode(files[item]).decode("ascii")
        config_map = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": f"{name}-f", **metadata},
            "data": text,
            "binaryData": binary,
        }
        try:
            core.create_namespaced_secret(namespace, secret, _request_timeout=timeout)
            core.create_namespaced_config_map(namespace, config_map, _request_timeout=timeout)
            manifest = job_manifest(
                job,
                self.config,
                name=name,
                labels=labels,
                annotations=annotations,
                inputs=prepared.inputs,
                secret_files=prepared.secret_files,
            )
            created = batch.create_namespaced_job(namespace, manifest, _request_timeout=timeout)
            owner = {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "name": name,
                "uid": created.metadata.uid,
                "blockOwnerDeletion": True,
            }
            patch = {"metadata": {"ownerReferences": [owner]}}
            core.patch_namespaced_secret(f"{name}-s", namespace, patch, _request_timeout=timeout)
            core.patch_namespaced_config_map(f"{name}-f", namespace, patch, _request_timeout=timeout)
        except _api_exception() as exc:
            with contextlib.suppress(*_api_exception()):  # the Job never came: nothing owns the ConfigMap
                core.delete_namespaced_config_map(f"{name}-f", namespace, _request_timeout=timeout)
            raise errors.ExecutionError(f"kubernetes API error: {_reason(exc)}") from exc

    def _delete_secret(self, name: str) -> None:
        core, _ = self._apis()
        with contextlib.suppress(*_api_exception()):
            core.delete_namespaced_secret(
                name, self.namespace(), _request_timeout=self.config.request_timeout_s
            )

    def _delete_job(self, name: str, propagation: str) -> None:
        _, batch = self._apis()
        with contextlib.suppress(*_api_exception()):
            batch.delete_namespaced_job(
                name,
                self.namespace(),
                propagation_policy=propagation,
                grace_period_seconds=self.config.grace_s if propagation == "Foreground" else None,
                _request_timeout=self.config.request_timeout_s,
            )

    # --- watch ------------------------------------------------------------------------------------------
    async def _watch(
        self,
        job: Job,
        name: str,
        sink: LineSink,
        cancel: asyncio.Event,
        workdir: WorkDir,
        tool: Tool,
        prepared: script.Prepared,
    ) -> Result:
        state = _Watch(name=name, container=job.tool)
        captured = _Log()
        started = time.monotonic()
        timeout_s = job.invocation.timeout
        # Kubernetes enforces activeDeadlineSeconds; the agent's own deadline only covers a stuck API.
        deadline = started + timeout_s + self.config.grace_s + 10 * self.config.poll_s
        follower: asyncio.Task[None] | None = None
        try:
            while True:
                if cancel.is_set():
                    await asyncio.to_thread(self._delete_job, name, "Foreground")
                    raise script.Stopped("cancelled", timed_out=False)
                if time.monotonic() > deadline:
                    await asyncio.to_thread(self._delete_job, name, "Foreground")
                    raise script.Stopped(f"timed out after {timeout_s:g} s", timed_out=True)
                job_obj, pod = await asyncio.to_thread(self._read, state)
                status = _container_status(pod, state.container)
                if pod is not None and follower is None and _started(status):
                    state.pod = pod.metadata.name
                    follower = asyncio.create_task(self._follow(state.pod, state.container, sink, captured))
                terminated = status.state.terminated if status is not None and status.state else None
                if terminated is not None and not state.secret_deleted:
                    await asyncio.to_thread(self._delete_secret, f"{name}-s")
                    state.secret_deleted = True
                verdict = _conditions(job_obj)
                if verdict == "Complete":
                    break
                if verdict == "DeadlineExceeded":
                    await asyncio.to_thread(self._delete_job, name, "Foreground")
                    raise script.Stopped(f"timed out after {timeout_s:g} s", timed_out=True)
                failed_exit = terminated is not None and bool(terminated.exit_code)
                # The Job controller kills the pod first and records DeadlineExceeded after: a non-zero exit
                # without a verdict is final only once the Job had one more poll to say why.
                if verdict is not None or (failed_exit and state.exit_seen):
                    await _settle(follower, captured)
                    raise self._exited(state, terminated, captured, verdict)
                state.exit_seen = failed_exit
                await asyncio.to_thread(self._stuck, job, state, pod, status)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(cancel.wait(), timeout=self.config.poll_s)
            duration = time.monotonic() - started
            await _settle(follower, captured)
        except asyncio.CancelledError:  # the run itself was cancelled (agent stopping): stop the Job at once
            await asyncio.shield(asyncio.to_thread(self._delete_job, name, "Foreground"))
            raise
        finally:
            if follower is not None and not follower.done():
                follower.cancel()
        await asyncio.to_thread(self._delete_job, name, "Background")
        if job.action == "delete":
            return Result("READY", duration_s=duration, exit_code=0)
        if captured.outputs_too_big:
            raise errors.ExecutionError("outputs exceed 1 MiB")
        output_file = workdir.path(script.OUTPUT_FILES.get(tool.name, "outputs.json"))
        await asyncio.to_thread(_write_document, output_file, captured.outputs or "")
        document = await asyncio.to_thread(tool.collect_outputs, prepared.ctx)
        collected = outputs.apply(document, job.invocation.outputs, sink.masker)
        for note in collected.notes:
            await sink.system(note)
        return Result(
            "READY", outputs=collected.values, hosts=collected.hosts, duration_s=duration, exit_code=0
        )

    def _read(self, state: _Watch) -> tuple[Any, Any]:
        """The Job and its (newest) pod, or raise when the Job is gone."""
        core, batch = self._apis()
        namespace = self.namespace()
        timeout = self.config.request_timeout_s
        try:
            job_obj = batch.read_namespaced_job_status(state.name, namespace, _request_timeout=timeout)
            pods = core.list_namespaced_pod(
                namespace, label_selector=f"job-name={state.name}", _request_timeout=timeout
            ).items
        except _api_exception() as exc:
            if getattr(exc, "status", None) == 404:
                raise errors.ExecutionError(f"Job {state.name} was deleted while it ran") from exc
            log.warning("kubernetes_read_failed", job=state.name, error=_reason(exc))
            return None, None
        pods.sort(key=lambda pod: pod.metadata.creation_timestamp or 0)
        return job_obj, (pods[-1] if pods else None)

    def _exited(self, state: _Watch, terminated: Any, captured: _Log, verdict: str | None) -> script.Exited:
        if terminated is not None:
            code = int(terminated.exit_code or 0)
            if captured.status and terminated.reason != "OOMKilled":
                return script.Exited(captured.status, code)
            return script.Exited(
                f"{state.container} exited with code {code} ({terminated.reason or 'Error'})", code
            )
        return script.Exited(f"Job failed: {verdict}", None)

    def _stuck(self, job: Job, state: _Watch, pod: Any, status: Any) -> None:
        """Raise when the pod cannot start: image pull errors, bad container config, unschedulable."""
        now = time.monotonic()
        waiting = status.state.waiting if status is not None and status.state else None
        if waiting is not None and waiting.reason in PULL_ERRORS:
            state.pull_error_since = state.pull_error_since or now
            if now - state.pull_error_since >= self.config.pull_timeout_s:
                self._delete_job(state.name, "Foreground")
                reason = waiting.message or waiting.reason
                raise errors.ExecutionError(f"image {job.invocation.image} cannot be pulled: {reason}")
        else:
            state.pull_error_since = None
        if waiting is not None and waiting.reason == "CreateContainerConfigError":
            self._delete_job(state.name, "Foreground")
            raise errors.ExecutionError(f"CreateContainerConfigError: {waiting.message or ''}".rstrip(": "))
        conditions = (pod.status.conditions or []) if pod is not None and pod.status else []
        scheduled = next((c for c in conditions if c.type == "PodScheduled"), None)
        if scheduled is not None and scheduled.status == "False" and scheduled.reason == "Unschedulable":
            state.unschedulable_since = state.unschedulable_since or now
            if now - state.unschedulable_since >= self.config.pending_timeout_s:
                self._delete_job(state.name, "Foreground")
                raise errors.ExecutionError(f"pod not schedulable: {scheduled.message or scheduled.reason}")
        else:
            state.unschedulable_since = None

    async def _follow(self, pod: str, container: str, sink: LineSink, captured: _Log) -> None:
        """Follow the container's log to its end: stream its lines, keep the outputs and status lines."""
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        threading.Thread(target=self._pump, args=(pod, container, queue, loop), daemon=True).start()
        splitter = LineSplitter(max(sink.keep_bytes(), OUTPUTS_LINE_MAX))
        try:
            while (chunk := await queue.get()) is not None:
                for text, dropped in splitter.feed(chunk):
                    await _line(text, dropped, sink, captured)
            for text, dropped in splitter.flush():
                await _line(text, dropped, sink, captured)
        finally:
            captured.done.set()

    def _pump(
        self, pod: str, container: str, queue: "asyncio.Queue[bytes | None]", loop: asyncio.AbstractEventLoop
    ) -> None:
        core, _ = self._apis()
        response = None
        try:
            response = core.read_namespaced_pod_log(
                pod, self.namespace(), container=container, follow=True, _preload_content=False
            )
            # read1: whatever has arrived (stream() would wait for a full chunk: no live log)
            while chunk := response.read1(READ_CHUNK):
                loop.call_soon_threadsafe(queue.put_nowait, bytes(chunk))
        except Exception as exc:  # the API went away: the watch reports the outcome, the log just ends
            log.warning("kubernetes_log_follow_failed", pod=pod, error=type(exc).__name__)
        finally:
            if response is not None:
                with contextlib.suppress(Exception):
                    response.release_conn()
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(queue.put_nowait, None)


async def _line(text: str, dropped: int, sink: LineSink, captured: _Log) -> None:
    before, document, status = script.split_markers(text)
    if document is not None:  # never streamed: it may hold sensitive values
        captured.outputs = document
        captured.outputs_too_big = dropped > 0 or len(document.encode("utf-8")) > outputs.MAX_OUTPUTS_BYTES
    if status is not None:
        captured.status = status.strip()
    if before is not None:
        await sink.line("stdout", before, dropped_bytes=dropped if document is None and status is None else 0)


async def _settle(follower: "asyncio.Task[None] | None", captured: _Log) -> None:
    """Wait (bounded) for the followed log to end."""
    if follower is None:
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(captured.done.wait(), timeout=LOG_WAIT_S)


def _container_status(pod: Any, container: str) -> Any:
    if pod is None or pod.status is None:
        return None
    statuses = pod.status.container_statuses or []
    return next((s for s in statuses if s.name == container), None)


def _started(status: Any) -> bool:
    return (
        status is not None
        and status.state is not None
        and bool(status.state.running or status.state.terminated)
    )


def _conditions(job_obj: Any) -> str | None:
    """`Complete`, `DeadlineExceeded`, another failure reason, or None while the Job runs."""
    if job_obj is None or job_obj.status is None:
        return None
    for condition in job_obj.status.conditions or []:
        if condition.status != "True":
            continue
        if condition.type == "Complete":
            return "Complete"
        if condition.type == "Failed":
            return str(condition.reason or "Failed")
    return None


def _read_files(workdir: WorkDir, prepared: script.Prepared) -> dict[str, bytes]:
    return {item: workdir.path(item).read_bytes() for item in [*prepared.inputs, *prepared.secret_files]}


def _write_document(path: Path, text: str) -> None:
    from stackl.agent.workdir import write_private

    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_private(path, text)


def _kube_config() -> Any:
    """`kubernetes.config` (untyped functions: loaders of kubeconfig and in-cluster settings)."""
    import importlib

    return importlib.import_module("kubernetes.config")


def _api_exception() -> tuple[type[Exception], ...]:
    """What a failed API call raises: an error answer, or no answer."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    return (ApiException, HTTPError)


def _reason(exc: Exception) -> str:
    reason = getattr(exc, "reason", None) or str(exc)
    return str(reason).strip().splitlines()[0] if str(reason).strip() else type(exc).__name__
