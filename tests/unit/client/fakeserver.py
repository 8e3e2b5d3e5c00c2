"""A tiny in-memory STACKL API built from one function, for client and CLI unit tests.

It answers just enough of spec/api.md for the requests the CLI makes: ``/documents`` (bulk apply, list with
cursor pages, get, replace with ``If-Match``, delete with referrer checks, revisions, diff, restore), the 0.5
snapshot and policy-template paths, ``/version``, ``/about`` and ``/auth/whoami``, the 0.5 stack-instance
and ``/outputs`` paths with the task each starts (``/tasks``; ``task_outcome`` decides how tasks end) and the
log pages of ``/tasks/{id}/logs``, ``…/steps/…/log`` and ``/stack_instances/{name}/logs`` (``log_lines``),
with problem bodies as the real server sends them. ``fail_next`` makes the next request answer a given
problem, to drive every error path. Tests against the real in-process app live next to the API.
"""

import difflib
import json
import re
from collections.abc import Callable
from typing import Any

import httpx
import jsonpatch
import yaml

JsonDict = dict[str, Any]
CONFIG_TYPES = (
    "environment",
    "location",
    "zone",
    "functional_requirement",
    "service",
    "stack_application_template",
    "stack_infrastructure_template",
    "policy_template",
)
ALL_TYPES = (*CONFIG_TYPES, "stack_instance", "snapshot")
KNOWN_FIELDS = {
    "name",
    "type",
    "category",
    "description",
    "metadata",
    "cloud_provider",
    "params",
    "secrets",
    "resources",
    "tags",
    "packages",
    "policies",
    "agent",
    "outputs",
    "invocation",
    "outputs_format",
    "as_group",
    "functional_requirements",
    "resource_requirements",
    "service_policies",
    "services",
    "stages",
    "infrastructure_targets",
    "infrastructure_capabilities",
    "inputs",
    "policy",
    "snapshot",
    "source",
    "stack_infrastructure_template",
    "stack_application_template",
    "status",
    "state",
    "task",
}
TIME = "2025-05-01T10:15:30.123Z"


def problem(
    status: int, code: str, detail: str, errors: list[JsonDict] | None = None, **extra: Any
) -> httpx.Response:
    """A problem+json response as the server sends it (api.md §0.4)."""
    body = {
        "type": f"urn:stackl:problem:{code}",
        "code": code,
        "title": code.replace("_", " "),
        "status": status,
    }
    body |= {"detail": detail, "errors": errors or [], **extra}
    return httpx.Response(
        status, content=json.dumps(body), headers={"content-type": "application/problem+json"}
    )


def references(doc: JsonDict) -> list[tuple[str, str, str]]:
    """(type, name, path) of every document ``doc`` refers to."""
    refs: list[tuple[str, str, str]] = []
    if doc.get("type") == "service":
        refs += [
            ("functional_requirement", fr, f"functional_requirements[{i}]")
            for i, fr in enumerate(doc.get("functional_requirements", []))
        ]
    if doc.get("type") == "stack_application_template":
        refs += [
            ("service", s["service"], f"services[{i}].service") for i, s in enumerate(doc.get("services", []))
        ]
    if doc.get("type") == "stack_infrastructure_template":
        for i, target in enumerate(doc.get("infrastructure_targets", [])):
            refs += [
                (level, target[level], f"infrastructure_targets[{i}].{level}")
                for level in ("environment", "location", "zone")
            ]
    return refs


class FakeServer:
    """Documents with revisions in dicts, answering httpx requests through ``transport()``."""

    def __init__(self, *, token: str | None = None, page_size: int = 2, whoami: bool = True) -> None:
        self.revisions: dict[tuple[str, str], list[JsonDict | None]] = {}  # None = tombstone
        self.history: dict[tuple[str, str], list[JsonDict]] = {}
        self.requests: list[httpx.Request] = []
        self.token = token
        self.page_size = page_size
        self.whoami = whoami
        self.fail_next: httpx.Response | None = None
        self.concurrent_writes: list[JsonDict] = []  # written by "someone else" just before the next PUT
        routes: list[tuple[str, str, Callable[..., httpx.Response]]] = [
            ("GET", r"/version", self._version),
            ("GET", r"/about", lambda r: httpx.Response(200, json="fake-host")),
            ("GET", r"/auth/whoami", self._whoami),
            ("POST", r"/documents", self._bulk_apply),
            ("GET", r"/documents/(?P<t>[^/]+)", self._list),
            ("GET", r"/documents/(?P<t>[^/]+)/(?P<n>[^/]+)", self._get),
            ("PUT", r"/documents/(?P<t>[^/]+)/(?P<n>[^/]+)", self._replace),
            ("DELETE", r"/documents/(?P<t>[^/]+)/(?P<n>[^/]+)", self._delete),
            ("GET", r"/documents/(?P<t>[^/]+)/(?P<n>[^/]+)/revisions", self._revisions),
            ("GET", r"/documents/(?P<t>[^/]+)/(?P<n>[^/]+)/revisions/(?P<a>\w+)/diff/(?P<b>\w+)", self._diff),
            ("POST", r"/documents/(?P<t>[^/]+)/(?P<n>[^/]+)/restore", self._restore),
            ("POST", r"/snapshots/restore/(?P<n>[^/]+)", self._restore_snapshot),
            ("POST", r"/snapshots/(?P<t>[^/]+)/(?P<n>[^/]+)", self._create_snapshot),
            ("GET", r"/snapshots/(?P<t>[^/]+)/(?P<n>[^/]+)", self._list_snapshots),
            ("GET", r"/snapshots/(?P<n>[^/]+)", lambda r, n: self._get(r, "snapshot", n, legacy=True)),
            ("DELETE", r"/snapshots/(?P<n>[^/]+)", self._delete_snapshot),
            ("PUT", r"/policy_templates", self._put_policy_template),
            ("POST", r"/stack_instances", self._create_instance),
            ("PUT", r"/stack_instances", self._update_instance),
            ("GET", r"/stack_instances/(?P<n>[^/]+)", self._get_instance),
            ("DELETE", r"/stack_instances/(?P<n>[^/]+)", self._delete_instance),
            ("POST", r"/outputs", self._add_outputs),
            ("GET", r"/tasks", self._list_tasks),
            ("GET", r"/tasks/(?P<i>[^/]+)", self._get_task),
            ("POST", r"/tasks/(?P<i>[^/]+)/cancel", self._cancel_task),
            ("GET", r"/tasks/(?P<i>[^/]+)/logs", self._logs),
            ("GET", r"/tasks/(?P<i>[^/]+)/steps/(?P<a>[^/]+)/(?P<r>\d+)/(?P<f>[^/]+)/log", self._logs),
            ("GET", r"/stack_instances/(?P<n>[^/]+)/logs", self._logs),
        ]
        self.tasks: list[JsonDict] = []  # oldest first
        self.task_outcome = "succeeded"  # how the next task ends: succeeded, failed or cancelled
        self.log_lines: list[JsonDict] = []
        self.routes = [(m, re.compile(p), f) for m, p, f in routes]

    # --- state ----------------------------------------------------------------------------------------------
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def seed(self, *docs: JsonDict) -> None:
        for doc in docs:
            self.write(doc, "create")

    def current(self, doc_type: str, name: str) -> JsonDict | None:
        return (self.revisions.get((doc_type, name)) or [None])[-1]

    def stored(self, doc_type: str, name: str) -> JsonDict:
        """The current body of a document that must exist."""
        body = self.current(doc_type, name)
        assert body is not None, f"{doc_type} {name} does not exist"
        return body

    def write(self, doc: JsonDict, action: str, restored_from: int | None = None) -> int:
        key = (doc["type"], doc["name"])
        body = {k: v for k, v in doc.items() if k != "metadata"}
        self.revisions.setdefault(key, []).append(body)
        revision = len(self.revisions[key])
        entry = {"revision": revision, "action": action, "time": TIME, "subject": "local", "task_id": None}
        self.history.setdefault(key, []).insert(0, entry | {"restored_from": restored_from})
        return revision

    def full(self, doc_type: str, name: str, revision: int | None = None) -> JsonDict:
        revs = self.revisions[(doc_type, name)]
        number = revision or len(revs)
        body = revs[number - 1]
        assert body is not None
        meta = {"revision": number, "created_at": TIME, "created_by": "local", "updated_at": TIME}
        return {**body, "metadata": meta | {"updated_by": "local", "deleted": False}}

    def warnings_of(self, doc: JsonDict) -> list[str]:
        return [f"{t} {n!r} does not exist" for t, n, _ in references(doc) if self.current(t, n) is None]

    # --- dispatch -------------------------------------------------------------------------------------------
    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.fail_next is not None:
            response, self.fail_next = self.fail_next, None
            return response
        public = request.url.path in ("/version", "/about")
        if self.token and not public and request.headers.get("authorization") != f"Bearer {self.token}":
            return problem(401, "unauthorized", "Authentication required")
        for method, pattern, handler in self.routes:
            match = pattern.fullmatch(request.url.path)
            if match and method == request.method:
                return handler(request, **match.groupdict())
        return problem(404, "not_found", f"no route {request.method} {request.url.path}")

    def _missing(self, doc_type: str, name: str) -> httpx.Response | None:
        if doc_type not in ALL_TYPES:
            return problem(404, "not_found", f"unknown document type {doc_type!r}")
        if self.current(doc_type, name) is None:
            return problem(404, "not_found", f"{doc_type} {name!r} not found")
        return None

    # --- handlers -------------------------------------------------------------------------------------------
    def _version(self, request: httpx.Request) -> httpx.Response:
        body = {
            "version": "0.1.0",
            "api": "1",
            "compat": "0.5",
            "database": "sqlite",
            "auth_enabled": bool(self.token),
        }
        return httpx.Response(200, json=body)

    def _whoami(self, request: httpx.Request) -> httpx.Response:
        if not self.whoami:
            return problem(404, "not_found", "Not Found")
        return httpx.Response(200, json={"subject": "alice" if self.token else "local", "roles": ["admin"]})

    def _validate(self, doc: Any, loc: list[Any]) -> list[JsonDict]:
        if not isinstance(doc, dict):
            return [{"loc": loc, "msg": "must be an object", "type": "type"}]
        problems = [
            {"loc": [*loc, k], "msg": "unknown field", "type": "extra_forbidden"}
            for k in doc
            if k not in KNOWN_FIELDS
        ]
        if doc.get("type") not in CONFIG_TYPES:
            problems.append({"loc": [*loc, "type"], "msg": "cannot be applied", "type": "enum"})
        return problems

    def _bulk_apply(self, request: httpx.Request) -> httpx.Response:
        docs = json.loads(request.content)
        problems = [p for i, d in enumerate(docs) for p in self._validate(d, [i])]
        if problems:
            return problem(422, "validation", f"{len(problems)} errors", problems)
        dry_run = request.url.params.get("dry_run") == "true"
        results = []
        for index, doc in enumerate(docs):
            body = {k: v for k, v in doc.items() if k != "metadata"}
            old = self.current(doc["type"], doc["name"])
            action = "created" if old is None else "unchanged" if old == body else "updated"
            revision = len(self.revisions.get((doc["type"], doc["name"]), []))
            if action != "unchanged":
                revision += 1
                if not dry_run:
                    self.write(body, "create" if old is None else "update")
            result = {
                "index": index,
                "type": doc["type"],
                "name": doc["name"],
                "action": action,
                "revision": revision,
            }
            result["warnings"] = self.warnings_of(body)
            if dry_run or request.url.params.get("diff") == "true":
                result["patch"] = jsonpatch.make_patch(old or {}, body).patch
            results.append(result)
        return httpx.Response(200, json={"dry_run": dry_run, "results": results})

    def _list(self, request: httpx.Request, t: str) -> httpx.Response:
        if t not in ALL_TYPES:
            return problem(404, "not_found", f"unknown document type {t!r}")
        name = request.url.params.get("name", "")
        names = sorted(
            n for (dt, n), revs in self.revisions.items() if dt == t and revs[-1] is not None and name in n
        )
        start = int(request.url.params.get("cursor", "0"))
        page = names[start : start + self.page_size]
        next_cursor = str(start + self.page_size) if start + self.page_size < len(names) else None
        return httpx.Response(
            200, json={"items": [self.full(t, n) for n in page], "next_cursor": next_cursor}
        )

    def _get(self, request: httpx.Request, t: str, n: str, legacy: bool = False) -> httpx.Response:
        if missing := self._missing(t, n):
            return missing
        revision = request.url.params.get("revision")
        doc = self.full(t, n, int(revision) if revision else None)
        if legacy:
            doc = {k: v for k, v in doc.items() if k not in ("metadata", "source")}
        return httpx.Response(
            200, json=doc, headers={"Stackl-Revision": str(doc.get("metadata", {}).get("revision", ""))}
        )

    def _replace(self, request: httpx.Request, t: str, n: str) -> httpx.Response:
        if missing := self._missing(t, n):
            return missing
        while self.concurrent_writes:
            self.write(self.concurrent_writes.pop(0), "update")
        current = len(self.revisions[(t, n)])
        if_match = request.headers.get("if-match")
        if if_match is not None and if_match != f'"{current}"':
            return problem(
                412, "precondition_failed", f"{t} {n!r} is at revision {current}", current_revision=current
            )
        doc = json.loads(request.content)
        if problems := self._validate(doc, ["body"]):
            return problem(422, "validation", f"{len(problems)} error(s)", problems)
        body = {k: v for k, v in doc.items() if k != "metadata"}
        if body != self.current(t, n):
            self.write(body, "update")
        warnings = [("Stackl-Warning", w) for w in self.warnings_of(body)]
        return httpx.Response(200, json=self.full(t, n), headers=warnings)

    def _delete(self, request: httpx.Request, t: str, n: str) -> httpx.Response:
        if missing := self._missing(t, n):
            return missing
        referrers = [
            {"type": d["type"], "name": d["name"], "path": path}
            for revs in self.revisions.values()
            if (d := revs[-1]) is not None
            for rt, rn, path in references(d)
            if (rt, rn) == (t, n)
        ]
        if referrers and request.url.params.get("force") != "true":
            errs = [
                {
                    "loc": ["references", r["type"], r["name"]],
                    "msg": f"references {t} {n!r}",
                    "type": "referenced",
                }
                for r in referrers
            ]
            detail = (
                f"{t} {n!r} is referenced by {len(referrers)} document(s); delete it first or use ?force=true"
            )
            return problem(409, "referenced", detail, errs, referrers=referrers)
        self.revisions[(t, n)].append(None)
        self.history[(t, n)].insert(
            0,
            {
                "revision": len(self.revisions[(t, n)]),
                "action": "delete",
                "time": TIME,
                "subject": "local",
                "task_id": None,
                "restored_from": None,
            },
        )
        headers = [
            ("Stackl-Warning", f"{r['type']} {r['name']!r} now refers to a missing {t}") for r in referrers
        ]
        return httpx.Response(204, headers=headers)

    def _revisions(self, request: httpx.Request, t: str, n: str) -> httpx.Response:
        if (t, n) not in self.history:
            return problem(404, "not_found", f"{t} {n!r} never existed")
        entries = self.history[(t, n)]
        start, limit = int(request.url.params.get("cursor", "0")), int(request.url.params.get("limit", "100"))
        size = min(limit, self.page_size)
        next_cursor = str(start + size) if start + size < len(entries) else None
        return httpx.Response(200, json={"items": entries[start : start + size], "next_cursor": next_cursor})

    def _diff(self, request: httpx.Request, t: str, n: str, a: str, b: str) -> httpx.Response:
        if (t, n) not in self.revisions:
            return problem(404, "not_found", f"{t} {n!r} never existed")
        revs = self.revisions[(t, n)]
        ia, ib = (len(revs) if x == "latest" else int(x) for x in (a, b))
        old, new = revs[ia - 1] or {}, revs[ib - 1] or {}
        text = "".join(
            difflib.unified_diff(
                yaml.safe_dump(old, sort_keys=False).splitlines(keepends=True),
                yaml.safe_dump(new, sort_keys=False).splitlines(keepends=True),
                f"{t}/{n} revision {ia}",
                f"{t}/{n} revision {ib}",
            )
        )
        return httpx.Response(
            200, json={"from": ia, "to": ib, "patch": jsonpatch.make_patch(old, new).patch, "text": text}
        )

    def _restore(self, request: httpx.Request, t: str, n: str) -> httpx.Response:
        revision = json.loads(request.content)["revision"]
        body = self.revisions[(t, n)][revision - 1]
        assert body is not None
        if t == "stack_instance":
            task = {"id": "01TASKRESTORE", "kind": "restore", "state": "queued"}
            return httpx.Response(
                202, json=task, headers={"Stackl-Task-Id": task["id"], "Location": "/tasks/01TASKRESTORE"}
            )
        self.write(body, "restore", restored_from=revision)
        return httpx.Response(200, json=self.full(t, n))

    def _create_snapshot(self, request: httpx.Request, t: str, n: str) -> httpx.Response:
        if missing := self._missing(t, n):
            return missing
        options = json.loads(request.content) if request.content else {}
        revision = options.get("revision") or len(self.revisions[(t, n)])
        name = options.get("name") or f"{t}_{n}_2025-05-01_10h15m30s"
        source = {"type": t, "name": n, "revision": revision}
        description = options.get("description") or f"snapshot of {t} {n} revision {revision}"
        snapshot = {"name": name, "type": "snapshot", "category": "history", "description": description}
        self.write(snapshot | {"snapshot": self.revisions[(t, n)][revision - 1], "source": source}, "create")
        return self._get(request, "snapshot", name, legacy=True)

    def _list_snapshots(self, request: httpx.Request, t: str, n: str) -> httpx.Response:
        found = [
            d
            for (dt, _), revs in self.revisions.items()
            if dt == "snapshot" and (d := revs[-1]) and d["source"]["type"] == t and d["source"]["name"] == n
        ]
        return httpx.Response(
            200, json=[{k: v for k, v in d.items() if k != "source"} for d in reversed(found)]
        )

    def _restore_snapshot(self, request: httpx.Request, n: str) -> httpx.Response:
        if missing := self._missing("snapshot", n):
            return missing
        snapshot = self.current("snapshot", n)
        assert snapshot is not None
        self.write(snapshot["snapshot"], "restore", restored_from=snapshot["source"]["revision"])
        return httpx.Response(200, json={"result": f"snapshot {n} restored"})

    def _delete_snapshot(self, request: httpx.Request, n: str) -> httpx.Response:
        if missing := self._missing("snapshot", n):
            return missing
        self.revisions[("snapshot", n)].append(None)
        return httpx.Response(200, json={"result": f"deleted snapshot {n}"})

    def _put_policy_template(self, request: httpx.Request) -> httpx.Response:
        doc = json.loads(request.content)
        if f"package {doc['name']}" not in doc.get("policy", ""):
            errs = [
                {
                    "loc": ["body", "policy"],
                    "msg": f"1:1: the package must be {doc['name']}",
                    "type": "policy_error",
                }
            ]
            return problem(422, "policy_error", "the policy does not compile", errs, policy=doc["name"])
        revision = self.write(
            doc, "create" if self.current("policy_template", doc["name"]) is None else "update"
        )
        return httpx.Response(
            200, json=doc, headers={"Stackl-Revision": str(revision), "ETag": f'"{revision}"'}
        )

    # --- stack instances, tasks and logs ---------------------------------------------------------------------
    def start_task(self, kind: str, name: str) -> JsonDict:
        """A task that is already final (``task_outcome``), with one step per status entry of the instance."""
        body = self.current("stack_instance", name) or {}
        failed = self.task_outcome != "succeeded"
        steps = [
            {
                "id": f"{e['service']}/{e.get('replica', 0)}/{e['functional_requirement']}",
                "state": "failed" if failed else "ready",
                "status": "FAILED" if failed else "READY",
                "agent": "bru-agent",
                "attempt": 1,
                "started_at": "2025-05-01T10:15:30.000Z",
                "finished_at": "2025-05-01T10:16:39.000Z",
                "error_message": "boom\nmore" if failed else "",
            }
            for e in body.get("status", [])
        ]
        ids = [s["id"] for s in steps]
        result = {
            "status": self.task_outcome,
            "error_message": f"{len(ids)} step(s) failed" if failed else "",
            "failed_steps": ids if failed else [],
            "rolled_back": False,
            "rollback": None,
        }
        task = {
            "id": f"01TASK{len(self.tasks) + 1:020d}",
            "kind": kind,
            "stack_instance": name,
            "state": self.task_outcome,
            "created_at": TIME,
            "started_at": "2025-05-01T10:15:30.000Z",
            "finished_at": "2025-05-01T10:16:40.000Z",
            "source": {"subject": "local"},
            "progress": {
                "stage": None,
                "ready": 0 if failed else len(ids),
                "failed": len(ids) if failed else 0,
            },
            "result": result,
            "steps": steps,
        }
        self.tasks.append(task)
        return task

    def _started(self, body: Any, task: JsonDict) -> httpx.Response:
        headers = {"Stackl-Task-Id": task["id"], "Location": f"/tasks/{task['id']}"}
        return httpx.Response(200, json=body, headers=headers)

    def _create_instance(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        name = body["stack_instance_name"]
        if self.current("stack_instance", name) is not None:
            return problem(422, "already_exists", "Stack instance already exists")
        replica = {
            "infrastructure_target": "production.brussels.dmz",
            "service": "webserver",
            "agent": "bru-agent",
        }
        doc = {
            "name": name,
            "type": "stack_instance",
            "category": "items",
            "stack_infrastructure_template": body["stack_infrastructure_template"],
            "stack_application_template": body["stack_application_template"],
            "instance_params": body.get("params", {}),
            "services": {"web": [replica]},
            "status": [
                {
                    "service": "web",
                    "functional_requirement": "vm",
                    "infrastructure_target": "production.brussels.dmz",
                    "status": "in_progress",
                    "error_message": "",
                }
            ],
        }
        self.write(doc, "create")
        task = self.start_task("create", name)
        placement = {"web": {"service": "webserver", "targets": ["production.brussels.dmz"]}}
        return self._started(placement, task)

    def _update_instance(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        name = body["stack_instance_name"]
        if self.current("stack_instance", name) is None:
            return problem(404, "not_found", "Stack instance not found")
        if any(t["stack_instance"] == name and t["state"] == "running" for t in self.tasks):
            return problem(409, "instance_busy", "a task is active", task_id="01BUSY", task_kind="update")
        doc = dict(self.stored("stack_instance", name))
        doc["instance_params"] = {**doc.get("instance_params", {}), **body.get("params", {})}
        self.write(doc, "update")
        return self._started("Stack instance updating", self.start_task("update", name))

    def _get_instance(self, request: httpx.Request, n: str) -> httpx.Response:
        body = self.current("stack_instance", n)
        if body is None:
            return problem(404, "not_found", "Stack instance not found")
        return httpx.Response(200, json=body)

    def _delete_instance(self, request: httpx.Request, n: str) -> httpx.Response:
        if self.current("stack_instance", n) is None:
            result = f"Stack instance {n} can't be deleted because it does not exist"
            return httpx.Response(200, json={"result": result})
        task = self.start_task("delete", n)
        self.revisions[("stack_instance", n)].append(None)
        return self._started({"result": f"Stack instance {n} is being deleted"}, task)

    def _add_outputs(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        doc = self.current("stack_instance", body["stack_instance"])
        if doc is None:
            return problem(404, "not_found", "Stack instance not found")
        if body["service"] not in doc.get("services", {}):
            return problem(422, "validation", f"stack instance has no service {body['service']!r}")
        doc = {**doc, "instance_outputs": {**doc.get("instance_outputs", {}), **body["outputs"]}}
        self.write(doc, "outputs")
        return httpx.Response(200, json=doc)

    def _list_tasks(self, request: httpx.Request) -> httpx.Response:
        name = request.url.params.get("stack_instance")
        limit = int(request.url.params.get("limit", "100"))
        found = [t for t in reversed(self.tasks) if name is None or t["stack_instance"] == name][:limit]
        return httpx.Response(
            200, json={"items": [{k: v for k, v in t.items() if k != "steps"} for t in found]}
        )

    def _task(self, i: str) -> JsonDict | None:
        return next((t for t in self.tasks if t["id"] == i), None)

    def _get_task(self, request: httpx.Request, i: str) -> httpx.Response:
        task = self._task(i)
        if task is None:
            return problem(404, "not_found", f"task {i} not found")
        steps = "steps" in request.url.params.get("include", "")
        return httpx.Response(200, json={k: v for k, v in task.items() if k != "steps" or steps})

    def _cancel_task(self, request: httpx.Request, i: str) -> httpx.Response:
        task = self._task(i)
        if task is None:
            return problem(404, "not_found", f"task {i} not found")
        if task["state"] in ("succeeded", "failed", "cancelled"):
            return problem(409, "conflict", f"task {i} is already {task['state']}")
        task["state"] = "cancelling"
        return httpx.Response(202, json=task)

    def _logs(self, request: httpx.Request, **path: str) -> httpx.Response:
        """Pages of ``log_lines`` (the cursor is an index), filtered like the server."""
        if "i" in path and self._task(path["i"]) is None:
            return problem(404, "not_found", f"task {path['i']} not found")
        known = any(t["stack_instance"] == path.get("n") for t in self.tasks)
        if "n" in path and not known and self.current("stack_instance", path["n"]) is None:
            return problem(404, "not_found", f"stack instance {path['n']} not found")
        params = request.url.params
        wanted = {
            "task_id": path.get("i") or params.get("task"),
            "service": path.get("a") or params.get("service"),
            "functional_requirement": path.get("f") or params.get("functional_requirement"),
            "infrastructure_target": params.get("target"),
        }
        lines = [
            line for line in self.log_lines if all(v is None or line.get(k) == v for k, v in wanted.items())
        ]
        start = int(params.get("cursor") or 0)
        size = min(int(params.get("limit", "100")), self.page_size)
        page = lines[start : start + size]
        end = start + len(page)
        finished = all(t["state"] in ("succeeded", "failed", "cancelled") for t in self.tasks)
        body = {"items": page, "next_cursor": str(end), "more": end < len(lines), "finished": finished}
        return httpx.Response(200, json=body)
