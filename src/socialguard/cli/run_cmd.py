"""`socialguard run`: the proxy, embedded mitmproxy with the socialguard addon."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from socialguard import paths

if TYPE_CHECKING:
    from socialguard.proxy import ProxyConfig

from .common import (
    EXIT_ENVIRONMENT,
    EXIT_INTERNAL,
    EXIT_USAGE,
    AuditKeyOption,
    CheckpointDirOption,
    LogDirOption,
    RulesOption,
    StateOption,
    fail,
)

ModeOption = Annotated[
    str,
    typer.Option(
        "--mode",
        help="regular (explicit proxy), transparent (gateway redirects 80/443 here), or wireguard.",
    ),
]
ListenOption = Annotated[
    str | None,
    typer.Option(
        "--listen",
        help="HOST:PORT to listen on ([ADDR]:PORT for IPv6, *:PORT for every address). Default: "
        "127.0.0.1:8080 (regular), *:8080 (transparent), *:51820 (wireguard, UDP).",
    ),
]
CertsOption = Annotated[
    Path | None,
    typer.Option(
        "--certs", help="The interception CA's directory (env SOCIALGUARD_CERTS; default certs/)."
    ),
]
NodeOption = Annotated[
    str,
    typer.Option(
        "--node", help="Node id naming this proxy's decision-log chain (default: the host name)."
    ),
]
AdminOption = Annotated[
    str,
    typer.Option("--admin", help="Loopback HOST:PORT for /healthz and /metrics (default: none)."),
]
ConnectTimeoutOption = Annotated[
    float,
    typer.Option(
        "--connect-timeout",
        min=0.1,
        max=300.0,
        help="Seconds to wait for an origin to accept a connection (then the client gets 502).",
    ),
]
IdleTimeoutOption = Annotated[
    int,
    typer.Option(
        "--idle-timeout",
        min=1,
        help="Seconds of silence both ways after which a connection is closed.",
    ),
]
WorkersOption = Annotated[
    int,
    typer.Option(
        "--workers", min=1, help="Run N proxy processes on ports PORT..PORT+N-1 (one per core)."
    ),
]


def run(  # noqa: PLR0917 - typer maps each CLI option to one parameter
    rules: RulesOption = None,
    mode: ModeOption = "regular",
    listen: ListenOption = None,
    certs: CertsOption = None,
    state: StateOption = None,
    log_dir: LogDirOption = None,
    node: NodeOption = "",
    admin: AdminOption = "",
    workers: WorkersOption = 1,
    checkpoint_dir: CheckpointDirOption = None,
    audit_key: AuditKeyOption = None,
    connect_timeout: ConnectTimeoutOption = 10.0,
    idle_timeout: IdleTimeoutOption = 300,
    audit_syslog: Annotated[
        str,
        typer.Option(
            "--audit-syslog",
            help="Ship checkpoints to this syslog collector as written (RFC 5424 over TCP): "
            "HOST:PORT or tls://HOST:PORT (env SOCIALGUARD_AUDIT_SYSLOG; default none).",
        ),
    ] = "",
    audit_syslog_ca: Annotated[
        str, typer.Option("--audit-syslog-ca", help="CA file verifying a tls:// collector.")
    ] = "",
    audit_syslog_records: Annotated[
        bool,
        typer.Option(
            "--audit-syslog-records",
            help="Ship every decision-log record to the --audit-syslog collector as written, in "
            "chain order, not only the checkpoints.",
        ),
    ] = False,
) -> None:
    """Start the proxy: enforce the rules on traffic through it, and log every decision.

    The interception CA is created in --certs on first start; its certificate's path is printed so
    that it can be trusted on the devices. So is the key that signs the decision log's checkpoints
    (--audit-key, private, mode 0600); its public half and fingerprint are printed for the
    auditors. The rules file and its includes are reloaded when they
    change (a broken file is refused and the running rules stay). Ctrl-C or SIGTERM stop it cleanly,
    closing the decision log.

    Example:

        socialguard run --rules rules/demo.yaml --listen 127.0.0.1:8080
    """
    from socialguard.proxy import ProxyConfig, ProxyMode, ensure_ca, parse_listen, parse_mode
    from socialguard.proxy.run import DEFAULT_LISTEN

    try:
        proxy_mode = parse_mode(mode)
        host, port = parse_listen(listen or DEFAULT_LISTEN[proxy_mode])
    except ValueError as e:
        raise fail(str(e)) from e
    rules_path = paths.rules_path(rules)
    state_path = paths.state_dir(state)
    if not rules_path.is_file():
        raise fail(f"{rules_path}: no such rules file (--rules or SOCIALGUARD_RULES)")
    key_path = paths.audit_key(audit_key, state_path)
    _ensure_audit_key(key_path)
    if workers > 1:
        _run_workers(workers, host, port, node, admin)
        return
    if proxy_mode is not ProxyMode.WIREGUARD and _in_use(host, port):
        shown = f"[{host}]:{port}" if ":" in host else f"{host or '*'}:{port}"
        raise fail(
            f"--listen {shown}: the address is in use (another proxy running?); "
            "choose another with --listen HOST:PORT",
            EXIT_ENVIRONMENT,  # the system refused: exit 4, as any other start-up refusal
        )
    certs_path = paths.certs_dir(certs)
    _configure_logging()
    try:
        ca_cert, created = ensure_ca(certs_path)
    except Exception as e:
        raise fail(f"{certs_path}: cannot create or read the interception CA: {e}") from e
    what = "created" if created else "using"
    typer.echo(f"CA certificate ({what}): {ca_cert.resolve()}", err=True)
    typer.echo("  trust it on client devices so that block pages show over HTTPS.", err=True)
    config = ProxyConfig(
        rules=rules_path,
        certs=certs_path,
        state=state_path,
        log_dir=paths.log_dir(log_dir, state_path),
        checkpoint_dir=paths.checkpoint_dir(checkpoint_dir, state_path),
        audit_key=key_path,
        audit_syslog=audit_syslog,
        audit_syslog_ca=audit_syslog_ca,
        audit_syslog_records=audit_syslog_records,
        mode=proxy_mode,
        listen_host=host,
        listen_port=port,
        node=node,
        admin=admin,
        connect_timeout=connect_timeout,
        idle_timeout=idle_timeout,
    )
    _serve(config)


def _ensure_audit_key(private: Path) -> None:
    """Make the checkpoint signing key on first start, and say where its public half is."""
    from socialguard.audit.checkpoints import ensure_keypair
    from socialguard.errors import SocialGuardError

    public = paths.public_key_of(private)
    try:
        kid, created = ensure_keypair(private, public)
    except OSError as e:  # a full or read-only disk, permissions: the system refused
        raise fail(
            f"{private}: cannot create or read the audit signing key: {e}", EXIT_ENVIRONMENT
        ) from e
    except SocialGuardError as e:
        raise fail(f"{private}: cannot create or read the audit signing key: {e}") from e
    what = "created" if created else "using"
    typer.echo(f"audit signing key ({what}): {private.resolve()} (private, mode 0600)", err=True)
    typer.echo(f"  public key {public.resolve()}, fingerprint {kid}", err=True)
    if created:
        typer.echo(
            "  give the public key to the auditors, off this machine: "
            "socialguard audit verify --key audit-signing.pub",
            err=True,
        )


def _in_use(host: str, port: int) -> bool:
    from socialguard.proxy.listen import address_in_use

    try:
        return address_in_use(host, port)
    except OSError:
        return False  # not for this check to say; mitmproxy reports what it cannot bind


def _serve(config: ProxyConfig) -> None:
    from socialguard.errors import SocialGuardError
    from socialguard.proxy import ProxyMode, serve
    from socialguard.proxy.run import StartupError

    def ready(addrs: list[tuple[str, int]]) -> None:
        where = ", ".join(f"{h}:{p}" for h, p in addrs)
        typer.echo(f"socialguard {config.mode.value} proxy listening on {where}", err=True)

    try:
        asyncio.run(serve(config, on_ready=ready, handle_signals=True))
    except StartupError as e:
        for cause in e.causes:
            typer.echo(f"error: {cause}", err=True)
        raise fail(
            "socialguard could not start" + (" (the system refused)" if e.environment else ""),
            EXIT_ENVIRONMENT if e.environment else EXIT_USAGE,
        ) from e
    except SocialGuardError as e:
        raise fail(str(e), EXIT_USAGE) from e
    except SystemExit as e:  # mitmproxy exiting some other way while starting
        if e.code not in (0, None):
            raise fail(f"mitmproxy stopped while starting (exit {e.code})", EXIT_INTERNAL) from e
    except KeyboardInterrupt:
        pass
    if config.mode is ProxyMode.WIREGUARD:
        _exit_before_teardown()


def _exit_before_teardown() -> NoReturn:
    """End a cleanly stopped process without the interpreter's teardown.

    mitmproxy_rs's WireGuard server leaves tokio threads behind that crash (SIGSEGV) while the
    interpreter finalizes, about every other stop here (mitmproxy issue 7409, open upstream): a
    clean stop then exits 139, which systemd and scripts read as a failure. By now the decision
    log is closed (file_close written, fsynced), and so are the stores and listeners.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _run_workers(n: int, host: str, port: int, node: str, admin: str = "") -> None:
    """N full `socialguard run` processes on consecutive ports, each with its own log chain."""
    from socialguard.deploy.workers import (
        spawn_workers,
        worker_admin,
        worker_node_id,
        worker_port,
    )

    args = sys.argv[1:]

    def argv_for(i: int) -> list[str]:
        rest = _strip_options(args, {"--workers", "--listen", "--node", "--admin"})
        own_admin = ["--admin", worker_admin(admin, i)] if admin.strip() else []
        wport = worker_port(port, i)
        listen = f"[{host}]:{wport}" if ":" in host else f"{host or '*'}:{wport}"
        return [
            sys.executable, "-m", "socialguard", *rest,
            "--listen", listen, "--node", worker_node_id(i, node or None), *own_admin,
        ]  # fmt: skip

    raise typer.Exit(spawn_workers(n, argv_for))


def _strip_options(argv: list[str], names: set[str]) -> list[str]:
    """argv without the given options (as `--opt value` or `--opt=value`)."""
    out: list[str] = []
    skip = False
    for a in argv:
        if skip:
            skip = False
            continue
        if a in names:
            skip = True
            continue
        if a.split("=", 1)[0] in names:
            continue
        out.append(a)
    return out


def _configure_logging() -> None:
    """Operational logs: console rendering on a TTY, JSON lines otherwise (journald, containers)."""
    import structlog

    tail: list[structlog.types.Processor] = (
        [structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback)]
        if sys.stderr.isatty()
        else [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    )
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            *tail,
        ],
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        cache_logger_on_first_use=True,
    )
