"""``stackl agent``: a user-side agent process (agents.md §1, §9); wiring only.

Flags (or ``STACKL_AGENT__*`` variables) pick the name, the server, the executor (``local``, ``docker``,
``kubernetes`` or ``mock``, with the ``--docker-*`` and ``--k8s-*`` options of agents.md §6.4-6.5), the
secret handler (``plain``, ``base64``, or ``vault`` with its ``--vault-*`` options, docs/security.md) and the
data directory; ``--ca-file`` (``STACKL_AGENT__CA_FILE``, ``STACKL_CA_FILE``) verifies an HTTPS server signed by
a private CA; the ``AgentRunner`` does the rest. A container executor learns the agent's name and instance
before the runner starts, and removes what the previous instance left (containers, Kubernetes objects).
SIGTERM/SIGINT start a graceful shutdown; a second signal skips the wait for running jobs. Exit 0 after a
graceful stop, 2 on bad configuration. Heavy imports stay inside the function, so ``stackl --help`` stays
fast. Like the rest of ``stackl.agent``, this talks to the server over HTTP only.
"""

import asyncio
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer

from stackl.config import is_loopback
from stackl.logs import configure_logging
from stackl.processes.common import shutdown_signals


def _env(option: str) -> str | None:
    return os.environ.get(f"STACKL_AGENT__{option.upper()}") or None


def agent(
    name: Annotated[str, typer.Option(help="agent name; jobs are routed by it")] = "common",
    server: Annotated[str | None, typer.Option(help="server URL, e.g. https://stackl.example.com")] = None,
    token_file: Annotated[
        Path | None, typer.Option("--token-file", help="file holding the agent token")
    ] = None,
    executor: Annotated[str, typer.Option(help="local, docker, kubernetes or mock")] = "local",
    max_jobs: Annotated[int, typer.Option("--max-jobs", min=1, max=1024, help="jobs run at once")] = 4,
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="default ~/.stackl-agent")] = None,
    automation_dir: Annotated[
        list[Path] | None, typer.Option("--automation-dir", help="code roots of the local executor")
    ] = None,
    label: Annotated[list[str] | None, typer.Option("--labels", help="k=v, shown in the agent list")] = None,
    secret_handler: Annotated[
        str | None, typer.Option("--secret-handler", help="plain (default), base64 or vault")
    ] = None,
    shutdown_timeout: Annotated[
        float, typer.Option("--shutdown-timeout", min=0, help="seconds a graceful stop waits for jobs")
    ] = 300.0,
    insecure: Annotated[bool, typer.Option(help="allow http:// to a non-loopback server")] = False,
    ca_file: Annotated[
        Path | None,
        typer.Option(
            "--ca-file", dir_okay=False, help="CA bundle verifying the server (else STACKL_CA_FILE)"
        ),
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error")] = "info",
    docker_pull: Annotated[
        str, typer.Option("--docker-pull", help="always, missing or never (docker and kubernetes)")
    ] = "missing",
    docker_user: Annotated[
        str | None, typer.Option("--docker-user", help="uid:gid of containers (default: the agent's)")
    ] = None,
    docker_network: Annotated[
        str, typer.Option("--docker-network", help="bridge, none, host or a network name")
    ] = "bridge",
    docker_mount: Annotated[
        list[str] | None, typer.Option("--docker-mount", help="extra bind mount /host:/container[:ro]")
    ] = None,
    docker_memory: Annotated[str | None, typer.Option("--docker-memory", help="e.g. 512m")] = None,
    docker_cpus: Annotated[float | None, typer.Option("--docker-cpus", min=0.01, help="e.g. 1.5")] = None,
    k8s_namespace: Annotated[
        str | None, typer.Option("--k8s-namespace", help="default: the agent's own namespace")
    ] = None,
    k8s_ttl: Annotated[int, typer.Option("--k8s-ttl", min=0, help="ttlSecondsAfterFinished of Jobs")] = 3600,
    k8s_job_service_account: Annotated[
        str, typer.Option("--k8s-job-service-account", help="service account of the Jobs' pods")
    ] = "default",
    k8s_pending_timeout: Annotated[
        float, typer.Option("--k8s-pending-timeout", min=1, help="seconds a pod may stay unschedulable")
    ] = 300.0,
    k8s_kubeconfig: Annotated[
        Path | None, typer.Option("--k8s-kubeconfig", help="kubeconfig file (default ~/.kube/config)")
    ] = None,
    k8s_context: Annotated[str | None, typer.Option("--k8s-context", help="kubeconfig context")] = None,
    k8s_in_cluster: Annotated[
        bool, typer.Option("--k8s-in-cluster", help="use the pod's service account, not a kubeconfig")
    ] = False,
    vault_addr: Annotated[str | None, typer.Option("--vault-addr", help="vault handler: Vault URL")] = None,
    vault_token_file: Annotated[
        Path | None, typer.Option("--vault-token-file", help="vault handler: token login")
    ] = None,
    vault_role_id_file: Annotated[
        Path | None, typer.Option("--vault-role-id-file", help="vault handler: AppRole login, role id")
    ] = None,
    vault_secret_id_file: Annotated[
        Path | None, typer.Option("--vault-secret-id-file", help="vault handler: AppRole login, secret id")
    ] = None,
    vault_approle_mount: Annotated[
        str | None, typer.Option("--vault-approle-mount", help="vault handler: default approle")
    ] = None,
    vault_k8s_role: Annotated[
        str | None, typer.Option("--vault-k8s-role", help="vault handler: Kubernetes login, role")
    ] = None,
    vault_k8s_jwt_file: Annotated[
        Path | None, typer.Option("--vault-k8s-jwt-file", help="vault handler: service account token file")
    ] = None,
    vault_k8s_mount: Annotated[
        str | None, typer.Option("--vault-k8s-mount", help="vault handler: default kubernetes")
    ] = None,
    vault_ca_file: Annotated[
        Path | None, typer.Option("--vault-ca-file", help="vault handler: CA bundle for TLS")
    ] = None,
    vault_namespace: Annotated[
        str | None, typer.Option("--vault-namespace", help="vault handler: Vault namespace")
    ] = None,
) -> None:
    """Run an agent: pull jobs for NAME from the server and run them."""
    from stackl.config import LoggingSettings

    configure_logging(
        LoggingSettings(level=log_level, format=os.environ.get("STACKL_LOGGING__FORMAT", "auto"))
    )
    url = server or _env("server")
    if not url:
        typer.echo("error: --server is required", err=True)
        raise typer.Exit(2)
    host = urlsplit(url).hostname or ""
    if urlsplit(url).scheme == "http" and not is_loopback(host) and not insecure:
        typer.echo("error: http:// is accepted only for loopback servers or with --insecure", err=True)
        raise typer.Exit(2)
    ca = ca_file or _env("ca_file") or os.environ.get("STACKL_CA_FILE") or None
    if ca is not None and not Path(ca).is_file():
        typer.echo(f"error: CA file {ca}: no such file", err=True)
        raise typer.Exit(2)
    token = _env("token")
    if token_file is not None:
        token = token_file.read_text().strip()
    labels = dict(item.split("=", 1) for item in (label or []) if "=" in item)
    directory = data_dir or Path(_env("data_dir") or Path.home() / ".stackl-agent")
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    flags = {
        "secret_handler": secret_handler,
        "vault_addr": vault_addr,
        "vault_token_file": vault_token_file,
        "vault_role_id_file": vault_role_id_file,
        "vault_secret_id_file": vault_secret_id_file,
        "vault_approle_mount": vault_approle_mount,
        "vault_k8s_role": vault_k8s_role,
        "vault_k8s_jwt_file": vault_k8s_jwt_file,
        "vault_k8s_mount": vault_k8s_mount,
        "vault_ca_file": vault_ca_file,
        "vault_namespace": vault_namespace,
    }
    try:
        handler = build_secret_handler(flags)
        chosen = build_executor(
            executor,
            data_dir=directory,
            automation_dirs=automation_dir or [Path("automation")],
            secret_handler=handler,
            options=ContainerOptions(
                pull=docker_pull,
                user=docker_user,
                network=docker_network,
                mounts=list(docker_mount or []),
                memory=docker_memory,
                cpus=docker_cpus,
                namespace=k8s_namespace,
                ttl_s=k8s_ttl,
                job_service_account=k8s_job_service_account,
                pending_timeout_s=k8s_pending_timeout,
                kubeconfig=k8s_kubeconfig,
                context=k8s_context,
                in_cluster=k8s_in_cluster,
            ),
        )
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    asyncio.run(
        _serve(
            name=name,
            url=url,
            token=token,
            executor=chosen,
            data_dir=directory,
            max_jobs=max_jobs,
            labels=labels,
            shutdown_timeout=shutdown_timeout,
            verify=str(ca) if ca is not None else True,
        )
    )


@dataclass(frozen=True)
class ContainerOptions:
    """The ``--docker-*`` and ``--k8s-*`` options (agents.md §6.4, §6.5); ``pull`` serves both executors."""

    pull: str = "missing"
    user: str | None = None
    network: str = "bridge"
    mounts: list[str] = field(default_factory=list)
    memory: str | None = None
    cpus: float | None = None
    namespace: str | None = None
    ttl_s: int = 3600
    job_service_account: str = "default"
    pending_timeout_s: float = 300.0
    kubeconfig: Path | None = None
    context: str | None = None
    in_cluster: bool = False


def build_secret_handler(flags: dict[str, Any]) -> Any:
    """The ``--secret-handler``: a name (``plain``, ``base64``) or a store handler built from its options.

    Flags that are None fall back to ``STACKL_AGENT__*`` settings, then to the defaults.

    Raises:
        ValueError: a setting is invalid, or the vault handler's options cannot work.
    """
    import pydantic

    from stackl.config import AgentSettings

    try:
        settings = AgentSettings(**{key: value for key, value in flags.items() if value is not None})
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            "STACKL_AGENT__" + ".".join(map(str, e["loc"])).upper() + ": " + e["msg"] for e in exc.errors()
        )
        raise ValueError(f"invalid agent setting {problems}") from None
    if settings.secret_handler != "vault":  # noqa: S105 - a handler name
        return settings.secret_handler
    import structlog

    from stackl.agent.vault import VaultConfig, VaultHandler

    handler = VaultHandler(
        VaultConfig(
            addr=settings.vault_addr,
            token_file=settings.vault_token_file,
            role_id_file=settings.vault_role_id_file,
            secret_id_file=settings.vault_secret_id_file,
            approle_mount=settings.vault_approle_mount,
            k8s_role=settings.vault_k8s_role,
            k8s_jwt_file=settings.vault_k8s_jwt_file,
            k8s_mount=settings.vault_k8s_mount,
            ca_file=settings.vault_ca_file,
            namespace=settings.vault_namespace,
            timeout_s=settings.vault_timeout_s,
        )
    )
    structlog.get_logger("stackl.agent").info(
        "vault_handler_configured", addr=handler.config.addr, login=handler.config.method
    )
    return handler


def build_executor(
    kind: str,
    *,
    data_dir: Path,
    automation_dirs: list[Path],
    secret_handler: Any,
    options: ContainerOptions | None = None,
) -> Any:
    """The executor named by ``--executor``.

    Raises:
        ValueError: unknown executor, secret handler, pull policy or mount.
    """
    options = options or ContainerOptions()
    if options.pull not in ("always", "missing", "never"):
        raise ValueError(f"unknown pull policy {options.pull!r}: use always, missing or never")
    pull: Any = options.pull
    if kind == "mock":
        from stackl.agent.executors.mock import MockExecutor

        return MockExecutor(secret_handler=secret_handler)
    if kind == "local":
        from stackl.agent.executors.local import LocalConfig, LocalExecutor

        config = LocalConfig(
            data_dir=data_dir,
            automation_dirs=[d.resolve() for d in automation_dirs],
            environ=dict(os.environ),
            secret_handler=secret_handler,
        )
        return LocalExecutor(config)
    if kind == "docker":
        from stackl.agent.executors.docker import DockerConfig, DockerExecutor

        return DockerExecutor(
            DockerConfig(
                data_dir=data_dir,
                pull=pull,
                user=options.user,
                network=options.network,
                mounts=options.mounts,
                memory=options.memory,
                cpus=options.cpus,
                secret_handler=secret_handler,
            )
        )
    if kind == "kubernetes":
        from stackl.agent.executors.kubernetes import KubernetesConfig, KubernetesExecutor

        return KubernetesExecutor(
            KubernetesConfig(
                data_dir=data_dir,
                namespace=options.namespace,
                kubeconfig=options.kubeconfig,
                context=options.context,
                in_cluster=options.in_cluster,
                ttl_s=options.ttl_s,
                service_account=options.job_service_account,
                pending_timeout_s=options.pending_timeout_s,
                pull=pull,
                secret_handler=secret_handler,
            )
        )
    raise ValueError(f"unknown executor {kind!r}: use local, docker, kubernetes or mock")


def previous_instance(data_dir: Path) -> str | None:
    """The instance id the last run of this agent recorded (the runner overwrites it when it starts)."""
    try:
        return (data_dir / "instance-id").read_text().strip() or None
    except OSError:
        return None


async def _serve(
    *,
    name: str,
    url: str,
    token: str | None,
    executor: Any,
    data_dir: Path,
    max_jobs: int,
    labels: dict[str, str],
    shutdown_timeout: float,
    verify: str | bool = True,
) -> None:
    import structlog

    from stackl.agent.protocol import AgentProtocol
    from stackl.agent.runner import AgentRunner

    log = structlog.get_logger("stackl.agent")
    stop, force = shutdown_signals(log, "agent")
    async with AgentProtocol(url, name, token=token, verify=verify) as protocol:
        runner = AgentRunner(
            name=name,
            protocol=protocol,
            executor=executor,
            data_dir=data_dir,
            max_jobs=max_jobs,
            shutdown_timeout_s=shutdown_timeout,
            labels=labels,
        )
        start = getattr(executor, "start", None)  # container executors: clean up after the previous instance
        if start is not None:
            await start(
                agent=name, instance_id=runner.instance_id, previous_instance_id=previous_instance(data_dir)
            )
        log.info(
            "agent_started",
            agent=name,
            instance_id=runner.instance_id,
            executor=executor.name,
            max_jobs=max_jobs,
        )
        await runner.run(stop, force)
