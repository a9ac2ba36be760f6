"""Embedding mitmproxy with the socialguard addon: what `socialguard run` starts.

The addon is added to a mitmproxy `Master` in-process rather than loaded with `-s`: mitmproxy
reloads `-s` scripts when they change and unloads one that fails, after which traffic flows
unfiltered. Embedded, the addon is part of the program; the rules file is what reloads, with
validation (see reload.py). The master carries only the mitmproxy addons a filter needs
(`filter_addons`).

`connection_strategy=lazy` is set here (mitmproxy 12.3 defaults to eager, under which a refused
ClientHello would already have been forwarded upstream).
"""

from __future__ import annotations

import asyncio
import logging
import re
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import structlog

from socialguard import fsmode
from socialguard.errors import ConfigError
from socialguard.refusals import environment_refused

from .clock import Clock
from .options import parse_hostport
from .timeouts import DEFAULT_CONNECT_TIMEOUT_S, DEFAULT_IDLE_TIMEOUT_S

log = structlog.get_logger(__name__)

CA_CERT_FILE = "mitmproxy-ca-cert.pem"


class StartupError(ConfigError):
    """The proxy did not start; `causes` says why, one line each, for stderr.

    `environment` is True when the system refused (a port in use, a full or read-only disk,
    permissions), False when the input was bad (invalid rules, a damaged store file, an option).
    """

    def __init__(self, causes: list[str], *, environment: bool) -> None:
        self.causes = causes or ["mitmproxy stopped during start-up without saying why"]
        self.environment = environment
        super().__init__("; ".join(self.causes))


def startup_error(messages: list[str], exc: BaseException | None = None) -> StartupError:
    """A StartupError from mitmproxy's start-up error messages and/or an exception chain."""
    causes = [line for m in messages for line in _cause_lines(m)]
    environment = environment_refused(exc, messages)
    return StartupError(causes, environment=environment)


def _cause_lines(message: str) -> list[str]:
    """mitmproxy's addon errors carry the traceback after the message; the message is the cause
    (every line of it: a rejected rules file lists each problem)."""
    out: list[str] = []
    for line in message.strip().splitlines():
        if line.startswith("Traceback"):
            break
        if line.strip():
            out.append(line.rstrip().removeprefix("Addon error: "))
    return out


class ProxyMode(StrEnum):
    """How clients reach the proxy."""

    REGULAR = "regular"  # explicit proxy: browsers or PAC point at it
    TRANSPARENT = "transparent"  # the gateway redirects ports 80/443 to it (nftables/iptables)
    WIREGUARD = "wireguard"  # roaming devices connect through mitmproxy's WireGuard server


# Where each mode listens unless told: an explicit proxy only for this machine (the demo); a gateway
# on every address, since the kernel redirects clients' connections to the incoming interface's
# address, not to loopback; WireGuard on its customary UDP port.
DEFAULT_LISTEN = {
    ProxyMode.REGULAR: "127.0.0.1:8080",
    ProxyMode.TRANSPARENT: "*:8080",
    ProxyMode.WIREGUARD: "*:51820",
}


def run_proxy(config: ProxyConfig, **kwargs: Any) -> None:
    """Run the proxy in this thread until SIGINT/SIGTERM (see `serve` for the keyword arguments)."""
    asyncio.run(serve(config, handle_signals=True, **kwargs))


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    """Everything `socialguard run` decides before mitmproxy starts."""

    rules: Path
    certs: Path
    state: Path
    log_dir: Path
    checkpoint_dir: Path | None = (
        None  # None: $SOCIALGUARD_CHECKPOINT_DIR, else <state>/checkpoints
    )
    audit_key: Path | None = None  # None: $SOCIALGUARD_AUDIT_KEY, else <state>/audit-signing.key
    audit_syslog: str = ""  # HOST:PORT or tls://HOST:PORT; "": $SOCIALGUARD_AUDIT_SYSLOG, else none
    audit_syslog_ca: str = ""
    audit_syslog_records: bool = False  # every record to the collector, not only checkpoints
    mode: ProxyMode = ProxyMode.REGULAR
    listen_host: str = "127.0.0.1"
    listen_port: int = 8080
    node: str = ""
    admin: str = ""
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S
    idle_timeout: int = DEFAULT_IDLE_TIMEOUT_S
    # More mitmproxy options (tests set e.g. ssl_insecure to reach a self-signed loopback upstream).
    mitmproxy_options: dict[str, Any] = field(default_factory=dict)


def parse_mode(raw: str) -> ProxyMode:
    try:
        return ProxyMode(raw.strip().lower())
    except ValueError:
        choices = ", ".join(m.value for m in ProxyMode)
        raise ValueError(f"--mode: {raw!r} is not one of {choices}") from None


def parse_listen(raw: str) -> tuple[str, int]:
    return parse_hostport(raw, what="--listen")


def ensure_ca(certs: Path) -> tuple[Path, bool]:
    """The CA certificate's path, creating the CA on first start; True when it was just created."""
    from socialguard.deploy.ca import existing_ca_files, init_ca

    cert = certs / CA_CERT_FILE
    fsmode.private_dir(certs)  # the CA's key, and WireGuard's keys: the service's alone
    if existing_ca_files(certs):
        return cert, False
    info, _ = init_ca(certs)
    return info.path, True


def filter_addons() -> list[Any]:
    """The mitmproxy addons a filter needs, in mitmproxy's own order, and no others.

    mitmproxy hands every event to every addon in its chain, four events to a plain keep-alive
    request, whether or not the addon has a hook for it; each addon a deployment does not use costs
    every request. Over mitmdump's 34 that dispatch is a third of a request's CPU: socialguard on
    this chain served 145 % of bare mitmdump's requests per CPU-second, on mitmdump's own chain
    96 % (bench/bench_proxy.py). Left out with the cost are the addons that rewrite, map, replay or
    save traffic when an option is set (modify_headers, map_remote, server_replay,
    save_stream_file, ...), which a filter should not carry, and the script loader, whose failed
    reload unloads a script and fails open.
    """
    from mitmproxy.addons import (
        block,
        core,
        disable_h2c,
        dns_resolver,
        errorcheck,
        next_layer,
        onboarding,
        proxyserver,
        strip_dns_https_records,
        tlsconfig,
    )

    return [
        core.Core(),  # the options and commands everything else uses
        block.Block(),  # block_global: never an open proxy to the internet (mitmproxy's default)
        strip_dns_https_records.StripDnsHttpsRecords(),  # no ECH keys reach WireGuard clients
        disable_h2c.DisableH2C(),  # h2c upgrades would smuggle requests past the HTTP/1 hooks
        onboarding.Onboarding(),  # http://mitm.it/: where devices fetch the CA to trust
        proxyserver.Proxyserver(),  # the listeners and connections
        dns_resolver.DnsResolver(),  # WireGuard clients' DNS
        next_layer.NextLayer(),  # what each connection is (TLS, HTTP, passthrough)
        tlsconfig.TlsConfig(),  # the CA and the certificates made with it
        errorcheck.ErrorCheck(),  # errors at start-up stop the start
    ]


def _show_listener_messages() -> None:
    """Let mitmproxy's listeners say what they started, on the terminal log: for WireGuard mode.

    mitmdump lowers the root logger to DEBUG; embedded, Python's default WARNING drops mitmproxy's
    INFO messages, and among them the only place WireGuard mode gives the client configuration
    that roaming devices import. Only the listeners' logger: per-connection messages stay out. The
    other modes have nothing there that `socialguard run`'s own "listening on" line does not say.
    """
    listeners = logging.getLogger("mitmproxy.proxy.mode_servers")
    listeners.setLevel(logging.INFO)
    if not any(isinstance(f, _BoundEndpoint) for f in listeners.filters):
        listeners.addFilter(_BoundEndpoint())


class _BoundEndpoint(logging.Filter):
    """Puts the port the WireGuard server is bound to in its client configuration.

    mitmproxy writes the configured port there, so `--listen 127.0.0.1:0` gave `Endpoint = ...:0`,
    which no device can reach; the listener's real address is known once it has started, which
    is when mitmproxy logs the configuration.
    """

    _ENDPOINT = re.compile(r"^(Endpoint = .+):0$", re.MULTILINE)

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if "Endpoint = " not in text or not self._ENDPOINT.search(text):
            return True
        from mitmproxy import ctx

        ps = ctx.master.addons.get("proxyserver")
        ports = [int(a[1]) for a in ps.listen_addrs()] if ps else []
        if ports:
            record.msg = self._ENDPOINT.sub(rf"\g<1>:{ports[0]}", text)
            record.args = ()
        return True


class _Ready:
    """Reports the addresses mitmproxy actually listens on, once it does (port 0 → a real port)."""

    def __init__(self, callback: Callable[[list[tuple[str, int]]], None]) -> None:
        self._callback = callback

    def running(self) -> None:
        from mitmproxy import ctx

        ps = ctx.master.addons.get("proxyserver")
        addrs = [(str(a[0]), int(a[1])) for a in ps.listen_addrs()] if ps else []
        self._callback(addrs)


async def serve(
    config: ProxyConfig,
    *,
    clock: Clock | None = None,
    extra_addons: Sequence[Any] = (),
    on_ready: Callable[[list[tuple[str, int]]], None] | None = None,
    on_master: Callable[[Any], None] | None = None,
    handle_signals: bool = False,
    with_termlog: bool = True,
) -> None:
    """Run mitmproxy with the addon until shut down (SIGINT/SIGTERM when `handle_signals`).

    Raises ConfigError when an option or the rules are refused at start-up; nothing is left running.
    `on_master` receives the master (tests call `master.shutdown()` through the loop).
    """
    from mitmproxy import exceptions, options
    from mitmproxy.master import Master

    from .addon import SocialGuard

    opts = options.Options(listen_host=config.listen_host, listen_port=config.listen_port)
    if with_termlog and config.mode is ProxyMode.WIREGUARD:
        _show_listener_messages()
    master = Master(opts, with_termlog=with_termlog)
    master.addons.add(*filter_addons())
    addon = SocialGuard(clock)
    master.addons.add(addon, *extra_addons)
    if on_ready is not None:
        master.addons.add(_Ready(on_ready))
    settings: dict[str, Any] = {
        "mode": [config.mode.value],
        "confdir": str(config.certs),
        "connection_strategy": "lazy",
        "tcp_timeout": config.idle_timeout,  # mitmproxy's idle timeout: nothing either way
        "socialguard_rules": str(config.rules),
        "socialguard_state": str(config.state),
        "socialguard_log_dir": str(config.log_dir),
        "socialguard_checkpoint_dir": str(config.checkpoint_dir or ""),
        "socialguard_audit_key": str(config.audit_key or ""),
        "socialguard_audit_syslog": config.audit_syslog,
        "socialguard_audit_syslog_ca": config.audit_syslog_ca,
        "socialguard_audit_syslog_records": config.audit_syslog_records,
        "socialguard_node": config.node,
        "socialguard_admin": config.admin,
        "socialguard_connect_timeout": config.connect_timeout,
    }
    try:
        opts.update(**{**settings, **config.mitmproxy_options})
    except (exceptions.OptionsError, KeyError) as e:
        addon.done()
        raise startup_error([str(e).strip("'\"")], e) from e
    if on_master is not None:
        on_master(master)
    if handle_signals:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, master.shutdown)
        loop.add_signal_handler(signal.SIGHUP, _check_rules_now, addon)
    try:
        await master.run()
    except SystemExit as e:  # errorcheck: something logged an error during start-up
        if e.code in (0, None):
            raise
        raise startup_error(_startup_messages(master)) from e
    finally:
        addon.done()  # already done if mitmproxy got as far as `running`; else close the log now
        await _close_listeners(master)
        if handle_signals:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                loop.remove_signal_handler(sig)
        log.info("proxy_stopped")


def _check_rules_now(addon: Any) -> None:
    """SIGHUP (`systemctl reload`): judge the rules file now rather than after it settles.

    Without a handler SIGHUP's default action ended the proxy, and the workers supervisor forwards
    it to every worker."""
    watcher = getattr(addon, "_watcher", None)
    log.info("rules_check_requested", signal="SIGHUP", watching=watcher is not None)
    if watcher is not None:
        watcher.check_now()


def _startup_messages(master: Any) -> list[str]:
    """The errors mitmproxy logged while starting (its errorcheck addon keeps them)."""
    ec = master.addons.get("errorcheck")
    records = getattr(getattr(ec, "logger", None), "has_errored", []) if ec else []
    return [r.getMessage() for r in records]


async def _close_listeners(master: Any) -> None:
    """Release the listening sockets (mitmdump leaves that to process exit; an embedder cannot)."""
    ps = master.addons.get("proxyserver")
    if ps is not None:
        try:
            await ps.servers.update([])
        except Exception as e:  # shutting down anyway; report it
            log.error("listener_close_failed", error=str(e))
