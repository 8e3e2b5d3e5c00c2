"""The ``vault`` secret handler: the agent reads each secret from Vault (or OpenBao) when the job runs.

With ``--secret-handler vault`` a document's secret value is a *reference*, not the secret: ``PATH#KEY`` reads
a KV version 2 path (``secret/data/infra/db#password``: the API path, with its ``data/`` segment) and takes one
key of it; ``kv1:PATH#KEY`` reads a path whose fields sit directly under ``data`` (KV version 1, and the read
of most other engines, e.g. ``kv1:database/creds/app#password``). The server only ever stores and sends the
reference, so the step's input hash covers the reference and a rotated value is picked up by the next run
(``force_rerun``) without the server holding it. Non-string values pass unchanged, as with ``base64``.

The agent logs in with a token file, AppRole (role id and secret id files) or Kubernetes (the pod's service
account token and a role), re-reading the files at each login so rotated credentials are picked up. A token is
renewed once two thirds of its lease have passed (or replaced by a new login when it cannot be renewed), and a
``403`` on a read triggers one fresh login before the read is called denied. Every failure names the secret's
key and Vault path (never a value) and what to check; the message becomes the step's error. (The whole
reference is the job's secret value as the server knows it, so the server masks it in messages: messages
name the path and the key apart.)
"""

import asyncio
import re
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx

from stackl import errors

KV1_PREFIX = "kv1:"
K8S_JWT_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")
RENEW_AFTER = 2 / 3  # of a token's lease: renew (or log in again) past this point
DETAIL_LIMIT = 200  # characters of Vault's own error text kept in a message

Method = Literal["token", "approle", "kubernetes"]

HINTS: dict[Method, str] = {
    "token": "the token in --vault-token-file (expired or revoked?)",
    "approle": "--vault-role-id-file and --vault-secret-id-file (has the secret id expired?)",
    "kubernetes": "--vault-k8s-role and the role's bound service accounts and namespaces",
}


@dataclass(frozen=True)
class Reference:
    """Where one secret lives: the engine's read shape, the API path under ``/v1/`` and the key."""

    engine: Literal["kv2", "kv1"]
    path: str
    key: str


def parse_reference(name: str, value: str) -> Reference:
    """The reference in the secret ``name``'s value.

    Raises:
        ExecutionError: the value is not ``[kv1:]PATH#KEY``; the message names the secret, not the value.
    """
    text = value.strip()
    engine: Literal["kv2", "kv1"] = "kv2"
    if text.startswith(KV1_PREFIX):
        engine, text = "kv1", text[len(KV1_PREFIX) :]
    path, hash_sign, key = text.partition("#")
    path = path.strip().strip("/")
    if not hash_sign or not path or not key or any(part in ("", ".", "..") for part in path.split("/")):
        raise errors.ExecutionError(
            f"secret {name} is not a Vault reference: with --secret-handler vault a secret's value is"
            " PATH#KEY (KV v2, e.g. secret/data/infra/db#password) or kv1:PATH#KEY"
        )
    return Reference(engine, path, key)


@dataclass(frozen=True)
class VaultConfig:
    """How the agent reaches and logs in to Vault (the ``--vault-*`` options, docs/security.md)."""

    addr: str
    token_file: Path | None = None
    role_id_file: Path | None = None
    secret_id_file: Path | None = None
    approle_mount: str = "approle"
    k8s_role: str | None = None
    k8s_jwt_file: Path = K8S_JWT_FILE
    k8s_mount: str = "kubernetes"
    ca_file: Path | None = None
    namespace: str | None = None
    timeout_s: float = 10.0

    @property
    def method(self) -> Method:
        """The login method the options choose (``check`` has made sure it is exactly one)."""
        if self.token_file is not None:
            return "token"
        if self.role_id_file is not None:
            return "approle"
        return "kubernetes"

    def check(self) -> None:
        """Refuse a configuration that cannot work, before the agent takes any job.

        Raises:
            ValueError: no address, not http(s), no or several login methods, or an unreadable file.
        """
        try:
            url = httpx.URL(self.addr) if self.addr else None
        except httpx.InvalidURL:
            url = None
        if url is None or url.scheme not in ("http", "https") or not url.host:
            raise ValueError(
                "the vault secret handler needs --vault-addr, e.g. https://vault.example.com:8200"
            )
        chosen = [
            name
            for name, given in (
                ("--vault-token-file", self.token_file is not None),
                ("--vault-role-id-file", self.role_id_file is not None),
                ("--vault-k8s-role", bool(self.k8s_role)),
            )
            if given
        ]
        if len(chosen) != 1:
            raise ValueError(
                "the vault secret handler needs exactly one login method: --vault-token-file, "
                "--vault-role-id-file with --vault-secret-id-file, or --vault-k8s-role"
                + (f" (given: {', '.join(chosen)})" if chosen else "")
            )
        if (self.role_id_file is None) != (self.secret_id_file is None):
            raise ValueError("AppRole login needs both --vault-role-id-file and --vault-secret-id-file")
        files: dict[Method, list[Path | None]] = {
            "token": [self.token_file],
            "approle": [self.role_id_file, self.secret_id_file],
            "kubernetes": [self.k8s_jwt_file],
        }
        for path in [*files[self.method], self.ca_file]:
            if path is not None and not path.is_file():
                raise ValueError(f"vault: file {path} does not exist or is not a file")


class _Refused(Exception):
    """Vault answered a request with an error status (internal: turned into an ExecutionError)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(status, detail)
        self.status = status
        self.detail = detail

    def describe(self) -> str:
        return f"{self.status}: {self.detail}" if self.detail else str(self.status)


@dataclass
class _Token:
    value: str
    obtained: float  # monotonic seconds
    lease_s: float  # 0 = does not expire
    renewable: bool

    def due(self, now: float) -> bool:
        return self.lease_s > 0 and now >= self.obtained + self.lease_s * RENEW_AFTER


class VaultHandler:
    """Resolves ``[kv1:]PATH#KEY`` secret values through Vault's HTTP API; see the module docstring.

    Args:
        config: address, login method and TLS (``config.check()`` is called here).
        transport: an httpx transport (tests pass a fake Vault); default: the network.
        clock: monotonic seconds, for token renewal (tests pass a manual clock).

    Raises:
        ValueError: the configuration cannot work (see `VaultConfig.check`), or the CA file is unreadable.
    """

    name = "vault"

    def __init__(
        self,
        config: VaultConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        config.check()
        self.config = config
        self._transport = transport
        self._clock = clock
        self._verify: ssl.SSLContext | bool = True
        if config.ca_file is not None:
            try:
                self._verify = ssl.create_default_context(cafile=str(config.ca_file))
            except (OSError, ssl.SSLError) as exc:
                raise ValueError(
                    f"vault: --vault-ca-file {config.ca_file} is not a CA bundle: {exc}"
                ) from exc
        self._token: _Token | None = None
        self._lock = asyncio.Lock()
        self.logins = 0  # how many times the agent logged in (a figure for tests and debugging)
        self.renewals = 0

    async def resolve(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The secrets with every reference replaced by the value it points at (each path read once).

        Raises:
            ExecutionError: a reference is malformed, its path or key does not exist, the read is denied,
                the login fails or Vault is unreachable; the message names the secret and its Vault path.
        """
        references = {
            name: parse_reference(name, value) for name, value in values.items() if isinstance(value, str)
        }
        resolved = dict(values)
        if not references:
            return resolved
        headers = {"X-Vault-Namespace": self.config.namespace} if self.config.namespace else {}
        async with httpx.AsyncClient(
            base_url=self.config.addr.rstrip("/") + "/v1/",
            verify=self._verify,
            timeout=self.config.timeout_s,
            transport=self._transport,
            headers=headers,
        ) as client:
            documents: dict[Reference, dict[str, Any]] = {}
            for name, reference in references.items():
                read = Reference(reference.engine, reference.path, "")
                if read not in documents:
                    documents[read] = await self._read(client, name, reference)
                fields = documents[read]
                if reference.key not in fields:
                    raise errors.ExecutionError(
                        f"secret {name}: Vault path {reference.path} has no key {reference.key!r}:"
                        " check the key after # and the secret's fields in Vault"
                    )
                resolved[name] = fields[reference.key]
        return resolved

    # --- reads ------------------------------------------------------------------------------------------
    async def _read(self, client: httpx.AsyncClient, name: str, reference: Reference) -> dict[str, Any]:
        where = f"secret {name}"  # not the whole reference: the server masks it as the job's secret value
        for first in (True, False):
            token = await self._current_token(client, where)
            try:
                body = await self._call(client, "GET", reference.path, where, token=token)
            except _Refused as exc:
                if exc.status == 403 and first:
                    await self._drop(token)  # expired or revoked: log in again once
                    continue
                if exc.status == 404:
                    raise errors.ExecutionError(
                        f"{where}: Vault path {reference.path} not found: check the path"
                        + (
                            " (KV v2 API paths have data/ after the mount, e.g. secret/data/infra/db;"
                            " use kv1: for KV version 1)"
                            if reference.engine == "kv2"
                            else ""
                        )
                    ) from None
                if exc.status == 403:
                    raise errors.ExecutionError(
                        f"{where}: Vault denied reading {reference.path} ({exc.describe()}): check that the"
                        f" policy of the agent's Vault login ({self.config.method}) grants read on it"
                    ) from None
                raise errors.ExecutionError(
                    f"{where}: Vault answered {exc.describe()} reading {reference.path}"
                ) from None
            return self._fields(body, reference, where)
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    @staticmethod
    def _fields(body: dict[str, Any], reference: Reference, where: str) -> dict[str, Any]:
        data = body.get("data")
        if reference.engine == "kv2":
            if isinstance(data, dict) and "data" in data and "metadata" in data:
                data = data["data"]
            else:
                raise errors.ExecutionError(
                    f"{where}: {reference.path} is not a KV version 2 secret: use kv1: for KV version 1"
                    " and other engines"
                )
        if not isinstance(data, dict):
            raise errors.ExecutionError(f"{where}: {reference.path} holds no fields (deleted version?)")
        return data

    # --- tokens -----------------------------------------------------------------------------------------
    async def _current_token(self, client: httpx.AsyncClient, where: str) -> str:
        async with self._lock:
            token = self._token
            if token is not None and token.due(self._clock()):
                token = await self._renew(client, token)
            if token is None:
                token = await self._login(client, where)
            self._token = token
            return token.value

    async def _drop(self, value: str) -> None:
        async with self._lock:
            if self._token is not None and self._token.value == value:
                self._token = None

    async def _renew(self, client: httpx.AsyncClient, token: _Token) -> _Token | None:
        """The renewed token, or None when it cannot be renewed (the caller logs in again)."""
        if not token.renewable:
            return None
        try:
            body = await self._call(client, "POST", "auth/token/renew-self", "renewal", token=token.value)
        except (_Refused, errors.ExecutionError):
            return None
        self.renewals += 1
        return self._token_from(body.get("auth") or {}, fallback=token.value)

    async def _login(self, client: httpx.AsyncClient, where: str) -> _Token:
        method = self.config.method
        try:
            if method == "token":
                value = await _read_text(self.config.token_file)
                body = await self._call(client, "GET", "auth/token/lookup-self", where, token=value)
                data = body.get("data") or {}
                token = _Token(value, self._clock(), float(data.get("ttl") or 0), bool(data.get("renewable")))
            else:
                if method == "approle":
                    mount = self.config.approle_mount
                    payload = {
                        "role_id": await _read_text(self.config.role_id_file),
                        "secret_id": await _read_text(self.config.secret_id_file),
                    }
                else:
                    mount = self.config.k8s_mount
                    payload = {
                        "role": self.config.k8s_role or "",
                        "jwt": await _read_text(self.config.k8s_jwt_file),
                    }
                body = await self._call(client, "POST", f"auth/{mount.strip('/')}/login", where, json=payload)
                token = self._token_from(body.get("auth") or {}, fallback="")
        except _Refused as exc:
            raise errors.ExecutionError(
                f"{where}: Vault login ({method}) at {self.config.addr} failed ({exc.describe()}):"
                f" check {HINTS[method]}"
            ) from None
        except OSError as exc:
            raise errors.ExecutionError(
                f"{where}: Vault login ({method}) cannot read {exc.filename}: {exc.strerror}"
            ) from None
        if not token.value:
            raise errors.ExecutionError(f"{where}: Vault login ({method}) returned no token")
        self.logins += 1
        return token

    def _token_from(self, auth: dict[str, Any], *, fallback: str) -> _Token:
        return _Token(
            str(auth.get("client_token") or fallback),
            self._clock(),
            float(auth.get("lease_duration") or 0),
            bool(auth.get("renewable")),
        )

    # --- HTTP -------------------------------------------------------------------------------------------
    async def _call(
        self,
        client: httpx.AsyncClient,
        verb: str,
        path: str,
        where: str,
        *,
        token: str | None = None,
        json: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        headers = {"X-Vault-Token": token} if token else {}
        try:
            response = await client.request(verb, path, headers=headers, json=json)
        except httpx.HTTPError as exc:
            raise errors.ExecutionError(
                f"{where}: Vault at {self.config.addr} is unreachable ({type(exc).__name__}: {exc}):"
                " check --vault-addr, the network and --vault-ca-file"
            ) from None
        try:
            body = response.json() if response.content else {}
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        if response.status_code >= 400:
            messages = body.get("errors")
            if not isinstance(messages, list):
                messages = []
            detail = _one_line("; ".join(str(message) for message in messages))[:DETAIL_LIMIT]
            raise _Refused(response.status_code, detail)
        return body


def _one_line(text: str) -> str:
    """Vault's error text on one line, without the ``1 error occurred:`` preamble and ``*`` bullets."""
    text = re.sub(r"\b\d+ errors? occurred:", "", text)
    return " ".join(word for word in text.split() if word != "*")


async def _read_text(path: Path | None) -> str:
    if path is None:  # pragma: no cover - check() makes sure the method's files are given
        raise FileNotFoundError(2, "no file given", "")
    return (await asyncio.to_thread(path.read_text)).strip()
