"""A fake Kubernetes API server for the kubernetes executor's tests: just the endpoints it uses, Jobs on Docker.

`FakeKubernetes` serves, on 127.0.0.1 from a thread (stdlib `http.server`): create, read, list (equality
label selectors), merge-patch and delete of Secrets, ConfigMaps and Jobs (`/status` too), pod listing and
pod log reading (with `follow`). Each created Job gets one pod, run as a container on the test's Docker
engine: the emptyDir, ConfigMap and Secret volumes are directories bind-mounted at their mount paths (the
Secret's files with its `defaultMode`), the network is `none`. Pod and Job status follow the container:
`Running`, then a terminated state with exit code and reason (`Completed`, `Error`, `OOMKilled`) and the Job
condition `Complete` or `Failed`; past `activeDeadlineSeconds` the container is killed and the Job fails with
`DeadlineExceeded`. An image the engine does not have leaves the pod waiting in `ErrImagePull`. Deleting a
Job deletes its pods and the objects it owns (not with `Orphan`). Every request is recorded for assertions.
"""

import base64
import contextlib
import copy
import json
import re
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

Key = tuple[str, str, str]  # (kind, namespace, name); kinds: secrets, configmaps, jobs, pods

_ROUTE = re.compile(
    r"^/(?:api/v1|apis/batch/v1)/namespaces/(?P<ns>[^/]+)/(?P<kind>secrets|configmaps|pods|jobs)"
    r"(?:/(?P<name>[^/]+))?(?:/(?P<sub>status|log))?$"
)
_LIST_KINDS = {"secrets": "SecretList", "configmaps": "ConfigMapList", "pods": "PodList", "jobs": "JobList"}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    body: Any


class _Pod:
    """The running side of one pod: its container and directories."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.container: str | None = None
        self.stop = threading.Event()


class FakeKubernetes:
    """See the module docstring; `url` is where the API answers once `start` returned."""

    def __init__(self, docker_url: str) -> None:
        self.docker_url = docker_url
        self.objects: dict[Key, dict[str, Any]] = {}
        self.requests: list[Request] = []
        self.mounted: dict[str, dict[str, int]] = {}  # pod → secret file → mode, as written
        self._pods: dict[str, _Pod] = {}
        self._lock = threading.RLock()
        self._dir = Path(tempfile.mkdtemp(prefix="stackl-fake-k8s-"))
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    # --- lifecycle --------------------------------------------------------------------------------------
    def start(self) -> "FakeKubernetes":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        for name in list(self._pods):
            self._delete_pod(name)
        shutil.rmtree(self._dir, ignore_errors=True)

    def configuration(self) -> Any:
        from kubernetes import client

        configuration = client.Configuration()
        configuration.host = self.url
        return configuration

    def docker(self) -> Any:
        import docker  # type: ignore[import-untyped]

        return docker.APIClient(base_url=self.docker_url, timeout=60)

    # --- queries for tests ------------------------------------------------------------------------------
    def get(self, kind: str, name: str, namespace: str = "default") -> dict[str, Any] | None:
        with self._lock:
            found = self.objects.get((kind, namespace, name))
            return copy.deepcopy(found) if found is not None else None

    def names(self, kind: str) -> list[str]:
        with self._lock:
            return sorted(name for k, _, name in self.objects if k == kind)

    def created(self, kind: str) -> list[dict[str, Any]]:
        """The bodies of the creation requests of `kind`, in order."""
        return [r.body for r in self.requests if r.method == "POST" and r.path.endswith(f"/{kind}")]

    def calls(self, method: str, kind: str) -> list[Request]:
        return [r for r in self.requests if r.method == method and f"/{kind}" in r.path]

    def put(self, kind: str, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        """Store an object as if created through the API (no pod is started for a Job)."""
        return self._store(kind, namespace, body)

    # --- HTTP ---------------------------------------------------------------------------------------------
    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, and chunked log streams as a real API server sends

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                fake._serve(self, "GET")

            def do_POST(self) -> None:
                fake._serve(self, "POST")

            def do_PATCH(self) -> None:
                fake._serve(self, "PATCH")

            def do_DELETE(self) -> None:
                fake._serve(self, "DELETE")

        return Handler

    def _serve(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(handler.path)
        query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        with self._lock:
            self.requests.append(Request(method, parts.path, query, copy.deepcopy(body)))
        match = _ROUTE.match(parts.path)
        if match is None:
            return self._reply(handler, 404, _status(404, "NotFound", f"no route {parts.path}"))
        ns, kind, name, sub = match["ns"], match["kind"], match["name"], match["sub"]
        if sub == "log" and name is not None:
            return self._log(handler, ns, name, query)
        with self._lock:
            code, answer = self._dispatch(method, ns, kind, name, query, body)
        return self._reply(handler, code, answer)

    @staticmethod
    def _reply(handler: BaseHTTPRequestHandler, code: int, answer: Any) -> None:
        data = json.dumps(answer).encode()
        handler.send_response(code)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _dispatch(
        self, method: str, ns: str, kind: str, name: str | None, query: dict[str, str], body: Any
    ) -> tuple[int, Any]:
        if name is None and method == "GET":
            items = [
                copy.deepcopy(obj)
                for (k, n, _), obj in sorted(self.objects.items())
                if k == kind and n == ns and _selected(obj, query.get("labelSelector", ""))
            ]
            api_version = "batch/v1" if kind == "jobs" else "v1"
            return 200, {"kind": _LIST_KINDS[kind], "apiVersion": api_version, "metadata": {}, "items": items}
        if name is None and method == "POST":
            if (kind, ns, body["metadata"]["name"]) in self.objects:
                return 409, _status(409, "AlreadyExists", f"{kind} {body['metadata']['name']} already exists")
            stored = self._store(kind, ns, body)
            if kind == "jobs":
                self._start_pod(stored)
            return 201, stored
        key = (kind, ns, name or "")
        if key not in self.objects:
            return 404, _status(404, "NotFound", f'{kind} "{name}" not found')
        if method == "GET":
            return 200, copy.deepcopy(self.objects[key])
        if method == "PATCH":
            _merge(self.objects[key], body or {})
            return 200, copy.deepcopy(self.objects[key])
        if method == "DELETE":
            propagation = (
                query.get("propagationPolicy") or (body or {}).get("propagationPolicy") or "Background"
            )
            self._delete(key, propagation)
            return 200, {"kind": "Status", "apiVersion": "v1", "status": "Success", "metadata": {}}
        return 405, _status(405, "MethodNotAllowed", method)

    def _store(self, kind: str, ns: str, body: dict[str, Any]) -> dict[str, Any]:
        stored = copy.deepcopy(body)
        metadata = stored.setdefault("metadata", {})
        metadata.update(namespace=ns, uid=str(uuid.uuid4()), creationTimestamp=_now(), resourceVersion="1")
        if kind == "jobs":
            stored["status"] = {"active": 1, "startTime": _now()}
        with self._lock:
            self.objects[(kind, ns, metadata["name"])] = stored
        return stored

    def _delete(self, key: Key, propagation: str) -> None:
        obj = self.objects.pop(key, None)
        if obj is None:
            return
        kind, ns, name = key
        if kind == "pods":
            self._delete_pod(name)
        if propagation == "Orphan":
            return
        uid = obj["metadata"]["uid"]
        for other_key, other in list(self.objects.items()):
            owners = other.get("metadata", {}).get("ownerReferences") or []
            if other_key[1] == ns and any(owner.get("uid") == uid for owner in owners):
                self._delete(other_key, propagation)

    # --- pods ---------------------------------------------------------------------------------------------
    def _start_pod(self, job: dict[str, Any]) -> None:
        template = job["spec"]["template"]
        ns, job_name = job["metadata"]["namespace"], job["metadata"]["name"]
        pod_name = f"{job_name}-{uuid.uuid4().hex[:5]}"
        container = template["spec"]["containers"][0]
        labels = dict(template.get("metadata", {}).get("labels") or {})
        labels |= {
            "job-name": job_name,
            "batch.kubernetes.io/job-name": job_name,
            "controller-uid": job["metadata"]["uid"],
        }
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": pod_name,
                "labels": labels,
                "annotations": dict(template.get("metadata", {}).get("annotations") or {}),
                "ownerReferences": [
                    {"apiVersion": "batch/v1", "kind": "Job", "name": job_name, "uid": job["metadata"]["uid"]}
                ],
            },
            "spec": copy.deepcopy(template["spec"]),
            "status": {
                "phase": "Pending",
                "conditions": [{"type": "PodScheduled", "status": "True"}],
                "containerStatuses": [
                    _container_status(container, {"waiting": {"reason": "ContainerCreating"}})
                ],
            },
        }
        self._store("pods", ns, pod)
        runtime = _Pod(self._dir / pod_name)
        self._pods[pod_name] = runtime
        threading.Thread(target=self._run_pod, args=(ns, job_name, pod_name, runtime), daemon=True).start()

    def _set_pod(self, ns: str, pod: str, phase: str, state: dict[str, Any], **extra: Any) -> None:
        with self._lock:
            obj = self.objects.get(("pods", ns, pod))
            if obj is None:
                return
            obj["status"]["phase"] = phase
            status = obj["status"]["containerStatuses"][0]
            status["state"] = state
            status["ready"] = "running" in state
            obj["status"].update(extra)

    def _finish_job(self, ns: str, name: str, condition: str, reason: str = "", message: str = "") -> None:
        with self._lock:
            job = self.objects.get(("jobs", ns, name))
            if job is None:
                return
            entry = {"type": condition, "status": "True", "lastTransitionTime": _now()}
            if reason:
                entry |= {"reason": reason, "message": message}
            counts = {"succeeded": 1} if condition == "Complete" else {"failed": 1}
            job["status"] = {"conditions": [entry], "startTime": job["status"].get("startTime"), **counts}
            if condition == "Complete":
                job["status"]["completionTime"] = _now()

    def _run_pod(self, ns: str, job_name: str, pod_name: str, runtime: _Pod) -> None:
        import docker

        client = self.docker()
        try:
            with self._lock:
                job = copy.deepcopy(self.objects.get(("jobs", ns, job_name)))
                pod = copy.deepcopy(self.objects.get(("pods", ns, pod_name)))
            if job is None or pod is None:
                return
            spec = pod["spec"]
            container = spec["containers"][0]
            started = time.monotonic()
            deadline = started + float(job["spec"].get("activeDeadlineSeconds") or 3600)
            try:
                client.inspect_image(container["image"])
            except docker.errors.ImageNotFound:
                message = f'Failed to pull image "{container["image"]}": pull access denied'
                self._set_pod(
                    ns, pod_name, "Pending", {"waiting": {"reason": "ErrImagePull", "message": message}}
                )
                runtime.stop.wait(max(deadline - time.monotonic(), 0))
                if not runtime.stop.is_set():
                    self._finish_job(
                        ns, job_name, "Failed", "DeadlineExceeded", "Job was active longer than specified"
                    )
                return
            binds = self._volumes(ns, pod_name, spec, container, runtime)
            created = client.create_container(
                container["image"],
                entrypoint=container.get("command"),
                command=container.get("args"),
                environment={item["name"]: item.get("value", "") for item in container.get("env") or []},
                working_dir=container.get("workingDir"),
                labels={"stackl.test/fake-k8s-pod": pod_name},
                host_config=client.create_host_config(binds=binds, network_mode="none"),
            )
            runtime.container = created["Id"]
            if runtime.stop.is_set():
                return
            client.start(created["Id"])
            self._set_pod(ns, pod_name, "Running", {"running": {"startedAt": _now()}})
            exited: dict[str, Any] = {}

            def wait() -> None:
                with contextlib.suppress(Exception):
                    exited.update(self.docker().wait(created["Id"]))

            waiter = threading.Thread(target=wait, daemon=True)
            waiter.start()
            while waiter.is_alive() and not runtime.stop.is_set() and time.monotonic() < deadline:
                waiter.join(0.05)
            if runtime.stop.is_set():
                return
            if waiter.is_alive():  # past activeDeadlineSeconds
                with contextlib.suppress(docker.errors.DockerException):
                    client.kill(created["Id"])
                waiter.join(10)
                terminated = {"terminated": {"exitCode": 137, "reason": "Error", "finishedAt": _now()}}
                self._set_pod(ns, pod_name, "Failed", terminated, reason="DeadlineExceeded")
                self._finish_job(
                    ns, job_name, "Failed", "DeadlineExceeded", "Job was active longer than specified"
                )
                return
            state = client.inspect_container(created["Id"])["State"]
            code = int(state.get("ExitCode") or 0)
            reason = "OOMKilled" if state.get("OOMKilled") else ("Completed" if code == 0 else "Error")
            terminated = {"terminated": {"exitCode": code, "reason": reason, "finishedAt": _now()}}
            self._set_pod(ns, pod_name, "Succeeded" if code == 0 else "Failed", terminated)
            if code == 0:
                self._finish_job(ns, job_name, "Complete")
            else:
                self._finish_job(
                    ns, job_name, "Failed", "BackoffLimitExceeded", "Job has reached the backoff limit"
                )
        finally:
            client.close()

    def _volumes(
        self, ns: str, pod: str, spec: dict[str, Any], container: dict[str, Any], runtime: _Pod
    ) -> dict[str, dict[str, str]]:
        """The pod's volumes as host directories, bound at the container's mount paths."""
        directories: dict[str, Path] = {}
        modes: dict[str, int] = {}
        for volume in spec.get("volumes") or []:
            path = runtime.root / volume["name"]
            path.mkdir(parents=True)
            path.chmod(0o777)
            directories[volume["name"]] = path
            if "configMap" in volume:
                source = self.get("configmaps", volume["configMap"]["name"], ns) or {}
                files = {k: v.encode() for k, v in (source.get("data") or {}).items()}
                files |= {k: base64.b64decode(v) for k, v in (source.get("binaryData") or {}).items()}
                _project(
                    path,
                    files,
                    volume["configMap"].get("items"),
                    volume["configMap"].get("defaultMode", 0o644),
                )
            if "secret" in volume:
                source = self.get("secrets", volume["secret"]["secretName"], ns) or {}
                files = {k: base64.b64decode(v) for k, v in (source.get("data") or {}).items()}
                mode = volume["secret"].get("defaultMode", 0o644)
                modes |= _project(path, files, volume["secret"].get("items"), mode)
        self.mounted[pod] = modes
        return {
            str(directories[mount["name"]]): {
                "bind": mount["mountPath"],
                "mode": "ro" if mount.get("readOnly") else "rw",
            }
            for mount in container.get("volumeMounts") or []
        }

    def _delete_pod(self, name: str) -> None:
        runtime = self._pods.pop(name, None)
        if runtime is None:
            return
        runtime.stop.set()
        if runtime.container is not None:
            client = self.docker()
            with contextlib.suppress(Exception):
                client.remove_container(runtime.container, force=True)
            client.close()
        shutil.rmtree(runtime.root, ignore_errors=True)

    def _log(self, handler: BaseHTTPRequestHandler, ns: str, pod: str, query: dict[str, str]) -> None:
        runtime = self._pods.get(pod)
        if ("pods", ns, pod) not in self.objects or runtime is None:
            return self._reply(handler, 404, _status(404, "NotFound", f'pods "{pod}" not found'))
        if runtime.container is None:
            message = f'container "{query.get("container")}" in pod "{pod}" is waiting to start'
            return self._reply(handler, 400, _status(400, "BadRequest", message))
        client = self.docker()
        try:
            if query.get("follow") != "true":
                data = client.logs(runtime.container, stdout=True, stderr=True)
                handler.send_response(200)
                handler.send_header("Content-Length", str(len(data)))
                handler.end_headers()
                handler.wfile.write(data)
                return None
            handler.send_response(200)
            handler.send_header("Content-Type", "text/plain")
            handler.send_header("Transfer-Encoding", "chunked")
            handler.end_headers()
            stream = client.logs(runtime.container, stdout=True, stderr=True, stream=True, follow=True)
            try:
                for chunk in stream:
                    handler.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    handler.wfile.flush()
                handler.wfile.write(b"0\r\n\r\n")
            finally:
                stream.close()
        except Exception:  # the container went away mid-stream: the log just ends
            return None
        finally:
            client.close()
        return None


def _container_status(container: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": container["name"],
        "image": container["image"],
        "imageID": "",
        "ready": False,
        "restartCount": 0,
        "state": state,
    }


def _project(
    path: Path, files: dict[str, bytes], items: list[dict[str, Any]] | None, mode: int
) -> dict[str, int]:
    """Write a ConfigMap's or Secret's files into `path` (`items` map keys to paths); their modes."""
    chosen = [(item["key"], item["path"]) for item in items] if items else [(key, key) for key in files]
    modes: dict[str, int] = {}
    for key, relative in chosen:
        target = path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(files[key])
        target.chmod(mode)
        modes[relative] = mode
    return modes


def _selected(obj: dict[str, Any], selector: str) -> bool:
    labels = obj.get("metadata", {}).get("labels") or {}
    for term in filter(None, selector.split(",")):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    return True


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        elif value is None:
            target.pop(key, None)
        else:
            target[key] = copy.deepcopy(value)


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
