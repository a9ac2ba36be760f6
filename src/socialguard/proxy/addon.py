"""The mitmproxy addon: facts from the wire → engine → decision log → pass, inspect, block.

Thin glue, no policy logic. Each hook starts with a guard, then runs one straight line: gather the
facts (who, which host, when), ask the engine, write the decision to the log (before any byte of
the answer goes out), then apply it. mitmproxy is fail-open — an exception in a hook is logged and
traffic flows — so every hook wraps its own work and, on any error, applies the policy's failure
mode (`fail: closed` by default: block) and records the error as a decision with basis `error`.

Two questions are asked (see ARCHITECTURE.md):
- per TLS connection, at the ClientHello: pass (not decrypted), inspect (decrypted, every request
  decided), or block (refused at the TLS layer: the origin is never contacted);
- per HTTP request inside inspected connections and plain HTTP: allow or block, on every name the
  request carries (Host/:authority, SNI, the explicit proxy's target); the stricter answer wins.

Refusing at the ClientHello needs `connection_strategy=lazy` (under `eager` mitmproxy has already
connected upstream and forwards the bytes), so the addon refuses to start without it.
"""

from __future__ import annotations

import binascii
import copy
import dataclasses
import functools
import gc
import ipaddress
import logging
import time
import traceback
import weakref
from collections.abc import Awaitable, Hashable, MutableMapping
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

import structlog
from mitmproxy import connection, ctx, exceptions, http, tls, udp
from mitmproxy.net.http import status_codes
from mitmproxy.proxy import layer, mode_specs
from mitmproxy.proxy.context import Context
from mitmproxy.proxy.server_hooks import ServerConnectionHookData

from socialguard import engine  # attribute access: tests may replace decide() there
from socialguard.audit import schema as audit_schema
from socialguard.engine import gateway as engine_gateway
from socialguard.engine.accounts import is_sign_in_host
from socialguard.engine.compiled import CompiledPolicy
from socialguard.engine.identity import Binding, describe_source
from socialguard.engine.model import (
    Action,
    Basis,
    ConnectionDecision,
    ConnectionVerdict,
    Decision,
    Principal,
    Request,
)
from socialguard.engine.paths import AmbiguousPath, request_target
from socialguard.fsmode import state_dir
from socialguard.identity import IdentityService

from . import (
    blockpage,
    bodies,
    budget,
    connections,
    gateway,
    names,
    passthrough,
    timeouts,
    uploads,
)
from .admin_events import AdminEventPump
from .answers import guarded
from .clock import Clock, SystemClock, epoch_seconds
from .forms import PREFIX as FORM_PREFIX
from .forms import FormRequest, form_person
from .neighbours import NeighbourTable
from .options import NeighbourMode, Settings, parse_settings
from .reload import LoadedPolicy, RulesWatcher, load_checked, rejection_errors
from .request_status import block_page_answer
from .visits import is_visit

log = structlog.get_logger(__name__)

ECH_EXTENSION = 0xFE0D
_ECH_TYPE_BYTES = ECH_EXTENSION.to_bytes(2, "big")
METADATA_KEY = "socialguard"
FORM_KEY = "socialguard_form"
SIGN_IN_KEY = "socialguard_sign_in"  # a request to the sign-in page, answered in `request`
REFUSED_MESSAGE = "refused by socialguard: the district's policy blocks this destination"
AUTH_REALM = "socialguard"
PRINCIPAL_CACHE_SIZE = 65536
OPTION_NAMES = (
    "socialguard_rules",
    "socialguard_state",
    "socialguard_log_dir",
    "socialguard_checkpoint_dir",
    "socialguard_audit_key",
    "socialguard_audit_syslog",
    "socialguard_audit_syslog_ca",
    "socialguard_audit_syslog_records",
    "socialguard_node",
    "socialguard_neighbours",
    "socialguard_reload_interval",
    "socialguard_admin",
    "socialguard_connect_timeout",
    "socialguard_upload_memory",
)


class NoPolicy(RuntimeError):
    """No valid policy is in force (only possible before start-up completed)."""


class Verdict(NamedTuple):
    """What the addon stores in `flow.metadata["socialguard"]` for later hooks and other addons.

    A NamedTuple, not a frozen dataclass: one is made per request, and a frozen dataclass's
    __init__ (one object.__setattr__ per field) cost several times as much.
    """

    decision_id: str
    action: str
    basis: str
    rule_id: str | None
    hosts: tuple[str, ...]


@dataclasses.dataclass(slots=True, eq=False)
class _Peer:
    """What stays true of one client connection under one policy: who it is, its SNI, its mode.

    Worked out at the connection's first request and kept until the connection closes (or the
    policy, the proxy-auth user, the device's MAC address or its identity binding changes), so
    that the requests after it do not resolve the client again: every request's own facts are
    still read from the request.
    """

    loaded: LoadedPolicy
    user: str | None
    mac: str | None
    client_ip: str
    principal: Principal
    sni: str | None
    explicit: bool
    log_paths: bool
    # the identity bindings (person, DHCP lease; engine/identity.py) the principal rests on
    binding: tuple[Binding | None, Binding | None] | None
    # the names the last request was addressed to, and what they were read from (see
    # _request_hosts): the requests of one connection nearly always name the same host
    hosts: tuple[str, ...] = ()
    hosts_from: tuple[object, ...] | None = None
    # names (the very tuple `hosts` held) that no rule of the policy concerns, with the
    # engine's answer for them, which depends on nothing else (engine.decided_by_host)
    by_host: tuple[tuple[str, ...], Decision] | None = None


class SocialGuard:
    """Enforce the district's rules on every connection and request passing through mitmproxy."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock: Clock = clock or SystemClock()
        self.forms: Any = None  # socialguard.proxy.forms.BlockPageForms, once the store is open
        self._settings: Settings | None = None
        self._loaded: LoadedPolicy | None = None
        self._watcher: RulesWatcher | None = None
        self._audit: Any = None
        self._store: Any = None
        self._refresher: Any = None
        self._metrics: Any = None
        self._admin: Any = None
        self._neighbours: NeighbourTable | None = None
        self._neighbours_mode = NeighbourMode.OFF
        # Client connections to reset in server_connect. Weak, so an entry goes with its
        # connection: no client_disconnected hook (one more dispatch per connection) to clean up.
        self._refused: weakref.WeakSet[connection.Client] = weakref.WeakSet()
        self._users: MutableMapping[connection.Client, str] = weakref.WeakKeyDictionary()
        # Set once a CONNECT proved a user: until then the per-request lookup is skipped (the
        # WeakKeyDictionary's len() and get() are Python code, on every request).
        self._proved_users = False
        self._pump: AdminEventPump | None = None
        self._notifier: Any = None  # socialguard.notify.Notifier, once the store is open
        self._loading = False
        self._principals: dict[tuple[object, ...], Principal] = {}
        # Open client connections' facts (see _Peer); client_disconnected drops an entry.
        self._peers: dict[connection.Client, _Peer] = {}
        self._encoded = audit_schema.EncodedDecisions()
        self._own_sockets = gateway.OwnSockets(_listen_addrs)
        self._connects = timeouts.ConnectTimeouts()
        # Connections decided in next_layer and left to mitmproxy's TLS layers (inspected):
        # tls_clienthello has nothing more to decide for them.
        self._decided_early: weakref.WeakSet[connection.Client] = weakref.WeakSet()
        self._held = budget.UploadBudget(budget.parse_upload_memory(budget.DEFAULT_UPLOAD_MEMORY))
        # identity sources' bindings (socialguard.identity), ending by the clock decisions use
        self.identity = IdentityService(clock=epoch_seconds(self.clock))
        self.sign_in: Any = None  # proxy.signin.SignInPortal, when the rules ask for one
        self._sign_in_spec: Any = None

    # ----------------------------------------------------------------- options and lifecycle

    def load(self, loader: Any) -> None:
        self._loading = True
        try:
            self._add_options(loader)
        finally:
            self._loading = False

    def _add_options(self, loader: Any) -> None:
        loader.add_option(
            "socialguard_rules",
            str,
            "",
            "The rules file (YAML), reloaded on change. "
            "Empty: $SOCIALGUARD_RULES, else rules/policy.yaml.",
        )
        loader.add_option(
            "socialguard_state",
            str,
            "",
            "State directory holding the overrides store. Empty: $SOCIALGUARD_STATE, else var/.",
        )
        loader.add_option(
            "socialguard_log_dir",
            str,
            "",
            "Decision log directory. Empty: $SOCIALGUARD_LOG_DIR, else <state>/log.",
        )
        loader.add_option(
            "socialguard_checkpoint_dir",
            str,
            "",
            "Directory for the decision log's signed checkpoints. "
            "Empty: $SOCIALGUARD_CHECKPOINT_DIR, else <state>/checkpoints.",
        )
        loader.add_option(
            "socialguard_audit_key",
            str,
            "",
            "Private key signing the checkpoints, used if it exists. "
            "Empty: $SOCIALGUARD_AUDIT_KEY, else <state>/audit-signing.key.",
        )
        loader.add_option(
            "socialguard_audit_syslog",
            str,
            "",
            "Syslog collector the checkpoints are shipped to as written (RFC 5424 over TCP): "
            "HOST:PORT, or tls://HOST:PORT. Empty: $SOCIALGUARD_AUDIT_SYSLOG, else none.",
        )
        loader.add_option(
            "socialguard_audit_syslog_ca",
            str,
            "",
            "CA file verifying a tls:// collector. Empty: the system's CAs.",
        )
        loader.add_option(
            "socialguard_audit_syslog_records",
            bool,
            False,
            "Ship every decision-log record to the syslog collector as written, in chain order, "
            "not only the checkpoints (needs socialguard_audit_syslog).",
        )
        loader.add_option(
            "socialguard_node",
            str,
            "",
            "This proxy's node id, naming its decision-log chain. Empty: the host name.",
        )
        loader.add_option(
            "socialguard_neighbours",
            str,
            "auto",
            "Read client MAC addresses from the host's neighbour table for the device inventory: "
            "auto (in transparent and wireguard mode), on, off.",
        )
        loader.add_option(
            "socialguard_reload_interval",
            float,
            0.5,
            "Seconds between checks of the rules file and its includes for changes.",
        )
        loader.add_option(
            "socialguard_admin",
            str,
            "",
            "HOST:PORT (loopback) for the admin endpoint serving /healthz and /metrics. "
            "Empty: none.",
        )
        loader.add_option(
            "socialguard_connect_timeout",
            float,
            timeouts.DEFAULT_CONNECT_TIMEOUT_S,
            "Seconds to wait for an origin to accept a connection; then the client gets a 502. "
            "(Idle connections are closed after mitmproxy's tcp_timeout.)",
        )
        loader.add_option(
            "socialguard_upload_memory",
            str,
            budget.DEFAULT_UPLOAD_MEMORY,
            "Memory all request bodies held for upload inspection may take together (e.g. 64m); "
            "an upload that does not fit is blocked at its headers (held_memory_full).",
        )

    def configure(self, updated: set[str]) -> None:
        if not updated.isdisjoint(("mode", "listen_host", "listen_port")):
            self._own_sockets.forget()
        if self._loading:
            return  # each add_option in load() announces itself; wait for the real configuration
        if self._settings is None and not _options_touched():
            # Nothing asked of the addon yet, or mitmproxy rolling the options back to that state
            # after an OptionsError (raising then would hide the real error). `running` checks
            # that configuration did happen.
            return
        self._configure(updated)

    @property
    def configured(self) -> bool:
        """Whether a configuration has been accepted (the addon is enforcing)."""
        return self._settings is not None

    def running(self) -> None:
        if self._settings is None:
            logging.getLogger(__name__).error(
                "socialguard is not configured: set connection_strategy=lazy and socialguard_rules"
            )
            ctx.master.shutdown()

    def _configure(self, updated: set[str]) -> None:
        ours = any(k.startswith("socialguard_") for k in updated)
        if ours or ("connection_strategy" in updated and self._settings is not None):
            _require_lazy()
        if ours or "stream_large_bodies" in updated:
            uploads.require_stream_limit(ctx.options.stream_large_bodies)
        if ours:
            try:
                settings = parse_settings(
                    rules=ctx.options.socialguard_rules,
                    state=ctx.options.socialguard_state,
                    log_dir=ctx.options.socialguard_log_dir,
                    checkpoint_dir=ctx.options.socialguard_checkpoint_dir,
                    audit_key=ctx.options.socialguard_audit_key,
                    audit_syslog=ctx.options.socialguard_audit_syslog,
                    audit_syslog_ca=ctx.options.socialguard_audit_syslog_ca,
                    audit_syslog_records=ctx.options.socialguard_audit_syslog_records,
                    node=ctx.options.socialguard_node,
                    neighbours=ctx.options.socialguard_neighbours,
                    reload_interval=ctx.options.socialguard_reload_interval,
                    admin=ctx.options.socialguard_admin,
                    connect_timeout=ctx.options.socialguard_connect_timeout,
                    upload_memory=ctx.options.socialguard_upload_memory,
                )
            except ValueError as e:
                raise exceptions.OptionsError(str(e)) from e
            self._apply(settings)
        if self._settings is not None and (
            "mode" in updated or "socialguard_neighbours" in updated
        ):
            self._update_neighbours(self._settings.neighbours, list(ctx.options.mode))

    def _apply(self, settings: Settings) -> None:
        """Open or reopen what changed; the policy first, so a bad rules file changes nothing."""
        old = self._settings
        if old is None or (old.rules, old.reload_interval_s) != (
            settings.rules,
            settings.reload_interval_s,
        ):
            self._start_policy(settings)
        if old is None or old.admin != settings.admin:
            self._start_admin(settings)
        if old is None or (
            old.log_dir, old.node, old.checkpoint_dir, old.audit_key, old.audit_syslog,
            old.audit_syslog_tls, old.audit_syslog_ca, old.audit_syslog_records,
        ) != (
            settings.log_dir, settings.node, settings.checkpoint_dir, settings.audit_key,
            settings.audit_syslog, settings.audit_syslog_tls, settings.audit_syslog_ca,
            settings.audit_syslog_records,
        ):  # fmt: skip
            self._stop_pump()
            self._open_audit(settings)
        if old is None or old.state != settings.state:
            self._stop_pump()
            self._stop_notifier()
            self._open_store(settings)
        if self._pump is None:
            self._pump = AdminEventPump(self._store, self._audit, settings.node).start()
            self._pump.wake()  # what the outbox held before this start
            if self._refresher is not None:
                self._refresher.on_change = self._store_changed
        if self._notifier is None:
            self._start_notifier(settings)
        self._settings = settings
        self._connects.timeout_s = settings.connect_timeout_s
        self._held.limit = settings.upload_memory
        self._update_neighbours(settings.neighbours, list(ctx.options.mode))

    def done(self) -> None:
        """Stop the background threads, then close the decision log (flushed, fsynced, sealed)."""
        if self._settings is None and self._audit is None:
            return  # never configured, or already stopped
        steps: list[tuple[str, Any]] = [
            ("rules_watcher", self._watcher and self._watcher.stop),
            ("identity", self.identity.stop),
            ("overrides_refresher", self._refresher and self._refresher.stop),
            ("admin_events", self._stop_pump),
            ("notifications", self._stop_notifier),
            ("neighbours", self._neighbours and self._neighbours.stop),
            ("admin_endpoint", self._admin and self._admin.stop),
            ("store", self._store and self._store.close),
            ("decision_log", self._audit and self._audit.close),
        ]
        for name, stop in steps:
            if not stop:
                continue
            try:
                stop()
            except Exception as e:  # shutting down: report and carry on closing the rest
                log.error("shutdown_step_failed", step=name, error=str(e))
        self._watcher = self._refresher = self._neighbours = self._admin = None
        self._store = self._audit = None
        self._settings = None
        log.info("socialguard_stopped")

    @property
    def policy(self) -> Any:
        """The compiled policy in force (for tests and the CLI); None before configuration."""
        return self._loaded.policy if self._loaded else None

    def _start_policy(self, settings: Settings) -> None:
        try:
            loaded = load_checked(settings.rules, state=settings.state)
        except Exception as e:
            errors = rejection_errors(e)
            raise exceptions.OptionsError(
                f"socialguard_rules: {settings.rules} was not accepted:\n" + "\n".join(errors)
            ) from e
        if self._watcher is not None:
            self._watcher.stop()
        try:
            self._configure_identity(loaded, settings.state)
        except (OSError, ValueError) as e:
            raise exceptions.OptionsError(f"identity: {e}") from e
        self._install_policy(loaded, reloaded=False)
        self._watcher = RulesWatcher(
            settings.rules,
            loaded,
            self._install_reloaded,
            self._reject_reload,
            interval_s=settings.reload_interval_s,
            state=settings.state,
            clock=self.clock.now,
        )
        self._watcher.start()

    def _install_policy(self, loaded: LoadedPolicy, *, reloaded: bool) -> None:
        self._loaded = loaded  # one reference assignment: hooks see the old policy or the new one
        self._principals = {}
        self._peers = {}  # each holds its policy: an idle connection must not keep the old alive
        _settle_heap()
        event = "rules_reloaded" if reloaded else "rules_loaded"
        log.info(event, version=loaded.policy.version, files=[s[0] for s in loaded.stamps])
        if self._metrics is not None:
            if reloaded:
                self._metrics.reload(ok=True)
            else:
                self._metrics.policy_loaded(True)

    def _install_reloaded(self, loaded: LoadedPolicy) -> None:
        if self._settings is not None:
            try:
                self._configure_identity(loaded, self._settings.state)
            except (OSError, ValueError) as e:  # the new rules run; the source stays down
                log.error("identity_source_failed", error=str(e))
        self._install_policy(loaded, reloaded=True)

    def _configure_identity(self, loaded: LoadedPolicy, state: Path) -> None:
        """Start or restart the identity sources the rules' `identity:` section names, and the
        sign-in page. Raises OSError or ValueError (a provider that cannot be discovered)."""
        policy = loaded.policy
        rules_dir = policy.source_files[0].parent
        self.identity.configure(policy.identity.spec, rules_dir, state)
        spec = policy.identity.spec.sign_in
        if spec == self._sign_in_spec:
            return
        self.sign_in = self._make_sign_in(spec, rules_dir) if spec is not None else None
        self._sign_in_spec = spec

    def _make_sign_in(self, spec: Any, rules_dir: Path) -> Any:
        """The sign-in page for `spec`, its provider discovered (blocking, at start or on a
        reload's thread): an unreachable provider is an error naming the issuer."""
        from socialguard.engine.identity import lifetime_seconds
        from socialguard.identity.oidc import OidcClient, OidcError

        from .pagekit import Brand
        from .signin import CALLBACK_PATH, SignInPortal

        oidc = None
        if spec.oidc is not None:
            oidc = OidcClient(spec.oidc, rules_dir, f"https://{spec.portal}{CALLBACK_PATH}")
            try:
                oidc.discover()
            except OidcError as e:
                raise ValueError(f"sign_in.oidc: {e}") from e

        def brand() -> Brand:
            district = self._require_policy().policy.district
            return Brand(district.name, district.contact, district.policy_url)

        identity = self.identity
        return SignInPortal(
            spec.portal,
            lifetime_seconds(spec.session),
            oidc,
            identity.sign_in,
            identity.sign_out,
            identity.person,
            brand,
            lambda: identity.clock(),  # noqa: PLW0108 - read late: the service's clock may change
            (lambda: identity.directory) if spec.ldap else None,
        )

    def _reject_reload(self, errors: list[str]) -> None:
        current = self._loaded.policy.version if self._loaded else None
        log.error("rules_rejected", errors=errors, kept_version=current)
        if self._notifier is not None and self._settings is not None:
            self._notifier.rules_rejected(str(self._settings.rules), errors, current)
        if self._metrics is not None:
            self._metrics.reload(ok=False)

    def _open_audit(self, settings: Settings) -> None:
        from socialguard.audit import AuditLog

        kwargs: dict[str, Any] = {"checkpoint_dir": settings.checkpoint_dir}
        if settings.audit_key.is_file():
            kwargs["signing_key"] = settings.audit_key
        if settings.audit_syslog is not None:
            from socialguard.audit.shipping import tls_context

            kwargs["ship_to"] = settings.audit_syslog
            kwargs["ship_records"] = settings.audit_syslog_records
            if settings.audit_syslog_tls:
                ca = settings.audit_syslog_ca
                kwargs["ship_tls"] = tls_context(str(ca) if ca else None)
        if self._loaded is not None:
            kwargs["timezone"] = self._loaded.policy.district.timezone
        old, self._audit = self._audit, None
        if old is not None:
            old.close()  # one writer per chain: the old log must let go before the new one opens
        self._audit = AuditLog(settings.log_dir, settings.node, **kwargs)

    def _open_store(self, settings: Settings) -> None:
        from socialguard import paths
        from socialguard.overrides import SnapshotRefresher, open_store

        state_dir(settings.state)  # socialguard.fsmode: 0750, tightened if left open
        store = open_store(paths.store_path(settings.state), clock=self.clock.now)
        refresher = SnapshotRefresher(store, interval_s=0.5, clock=self.clock.now).start()
        old_refresher, old_store = self._refresher, self._store
        self._store, self._refresher = store, refresher
        self.forms = self._make_forms(store, refresher)
        if old_refresher is not None:
            old_refresher.stop()
        if old_store is not None:
            old_store.close()

    def _make_forms(self, store: Any, refresher: Any) -> Any:
        from socialguard.overrides import Limits

        from .forms import BlockPageForms
        from .pagekit import Brand

        def limits() -> Limits:
            return Limits.from_policy(self._require_policy().policy)

        def brand() -> Brand:
            district = self._require_policy().policy.district
            return Brand(district.name, district.contact, district.policy_url)

        return BlockPageForms(store, limits, refresher=refresher, clock=self.clock.now, brand=brand)

    def _start_notifier(self, settings: Settings) -> None:
        """Deliver notices (socialguard.notify) on their own thread; woken on store changes."""
        from socialguard.notify import Notifier
        from socialguard.notify.people import PersonAddresses, signed_in_by

        def policy() -> Any:
            return self._loaded.policy if self._loaded else None

        addresses = PersonAddresses(
            policy,
            lambda: self.identity.directory,
            signed_in_by(self.identity, self.identity.clock),
            monotonic=self.identity.clock,  # the proxy's clock: tests move it past the cache
        )
        self._notifier = Notifier(
            self._store, policy, settings.node, clock=self.clock.now, addresses=addresses
        )
        self._notifier.start()

    def _stop_notifier(self) -> None:
        notifier, self._notifier = self._notifier, None
        if notifier is not None:
            notifier.stop()

    def _store_changed(self) -> None:
        """The store's change counter moved: admin events and notices may be waiting."""
        if self._pump is not None:
            self._pump.wake()
        if self._notifier is not None:
            self._notifier.wake()

    def _stop_pump(self) -> None:
        pump, self._pump = self._pump, None
        if self._refresher is not None:
            self._refresher.on_change = None
        if pump is not None:
            pump.stop()

    def _start_admin(self, settings: Settings) -> None:
        from socialguard.deploy.health import log_writable
        from socialguard.deploy.metrics import AdminServer, Metrics

        if self._admin is not None:
            self._admin.stop()
            self._admin = None
        if settings.admin is None:
            return
        if self._metrics is None:
            # Kept only where they can be read: counting every decision for no endpoint cost
            # each request a dozen lines.
            self._metrics = Metrics()
            self._metrics.policy_loaded(self._loaded is not None)
            self._metrics.track_overrides(lambda: self._refresher and self._refresher.current)
            self._metrics.track_identity(self._identity_counters)
            self._metrics.track_audit_shipping(
                lambda: self._audit.shipper.stats if self._audit and self._audit.shipper else None
            )
            self._metrics.track_audit_shipping(
                lambda: (
                    self._audit.record_shipper.stats
                    if self._audit and self._audit.record_shipper
                    else None
                ),
                what="records",
            )
            from socialguard.notify import NotificationCounts

            self._metrics.registry.register(
                NotificationCounts(lambda: self._notifier, self.clock.now)
            )
        host, port = settings.admin
        checks = {
            "policy": lambda: self._loaded is not None,
            "store": lambda: self._store is not None and self._store.change_counter() >= 0,
            "log": lambda: self._settings is not None and log_writable(self._settings.log_dir)(),
        }
        self._admin = AdminServer(self._metrics, host=host, port=port, checks=checks)
        self._admin.start()
        log.info("admin_endpoint_listening", address=list(self._admin.address))

    def _identity_counters(self) -> dict[str, Any]:
        """The identity sources' figures and the sign-in page's, for /metrics."""
        counts = dict(self.identity.counters())
        portal = self.sign_in
        if portal is not None:
            counts["sign_in"] = {**portal.counters, **portal.refused}
        return counts

    def _update_neighbours(self, mode: NeighbourMode, proxy_modes: list[str]) -> None:
        on = mode is NeighbourMode.ON or (
            mode is NeighbourMode.AUTO and any(_gateway_mode(m) for m in proxy_modes)
        )
        if on and self._neighbours is None:
            self._neighbours = NeighbourTable()
            self._neighbours.start()
        elif not on and self._neighbours is not None:
            self._neighbours.stop()
            self._neighbours = None

    # ----------------------------------------------------------------- connection-level hooks

    def http_connect(self, flow: http.HTTPFlow) -> None:
        """Explicit proxy: refuse a tunnel to the gateway itself; authenticate the CONNECT once
        (the tunnel's requests inherit the user)."""
        if flow.response or flow.error or not flow.live:
            return
        try:
            loaded = self._require_policy()
            refusal = self._gateway_refusal(loaded, flow.client_conn, flow.request.host,
                                            flow.request.port)  # fmt: skip
            if refusal is not None:
                decision_id = self._record_connection(
                    ConnectionDecision(ConnectionVerdict.BLOCK, refusal),
                    flow.client_conn,
                    None,
                    stage="connection",
                )
                flow.response = make_response(
                    403,
                    f"{refusal.reason}\nReference: {decision_id}\n".encode(),
                    {"Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-store"},
                )
                return
            if loaded.htpasswd is not None:
                user = self._authenticate(flow, loaded)
                if user is not None:
                    self._users[flow.client_conn] = user
                    self._proved_users = True
        except Exception as e:
            self._fail_request(flow, e, hook="http_connect")

    def _decide_hello_early(self, nextlayer: layer.NextLayer) -> None:
        """Decide a TLS connection on its ClientHello before mitmproxy stacks its TLS layers, so
        that one passed through (or refused) gets the bare relay (see passthrough.py)."""
        hello = passthrough.client_hello_ahead(nextlayer)
        if hello is None:
            return
        context = nextlayer.context
        context.client.sni = hello.sni  # as mitmproxy's TLS layer sets it before its hook
        data = tls.ClientHelloData(context, hello)
        self.tls_clienthello(data)
        if data.ignore_connection:
            passthrough.relay(nextlayer)
        else:
            self._decided_early.add(context.client)

    def tls_clienthello(self, data: tls.ClientHelloData) -> None:
        decided = self._decided_early
        if decided and data.context.client in decided:
            decided.discard(data.context.client)  # decided (and recorded) in next_layer
            return
        try:
            self._decide_connection(data)
        except Exception as e:
            self._fail_connection(data, e)

    def server_connect(self, data: ServerConnectionHookData) -> None:
        """Reset connections refused at the ClientHello before the origin is ever contacted;
        and never connect to the gateway itself, whatever asked for it (a backstop: requests
        and tunnels to it are refused, and recorded, before they get here)."""
        refused = self._refused
        if refused and data.client in refused:
            data.server.error = REFUSED_MESSAGE
            return
        address = data.server.address
        loaded = self._loaded
        if address is not None and loaded is not None:
            try:
                refusal = self._gateway_refusal(
                    loaded, data.client, str(address[0]), int(address[1])
                )
            except ValueError:
                refusal = None  # not a host name at all: the connection attempt itself will fail
            if refusal is not None:
                data.server.error = refusal.reason
                return
        self._connects.arm(data.server)

    def server_connected(self, data: ServerConnectionHookData) -> None:
        self._connects.disarm(data.server)

    def server_connect_error(self, data: ServerConnectionHookData) -> None:
        self._connects.disarm(data.server)

    def next_layer(self, nextlayer: layer.NextLayer) -> None:
        """Review mitmproxy's choice of layer before a byte is relayed (see connections.py): a
        ClientHello under any record version is TLS, and an opaque stream relays only where its
        destination would be passed through. Then a whole ClientHello is decided here, where a
        passed-through connection can still get the bare relay (passthrough.py)."""
        try:
            connections.review(nextlayer, _mitmproxy_next_layer, self._stream_passes)
        except Exception as e:
            log.error("hook_failed", hook="next_layer", error=repr(e), where=_where(e))
            if self._fail_mode() == "closed":
                nextlayer.layer = connections.Refused(nextlayer.context)
            return
        self._decide_hello_early(nextlayer)  # decides and records itself, failures included

    def _stream_passes(self, context: Context) -> bool:
        """Decide and record an opaque stream (neither TLS nor HTTP); True: relay it."""
        loaded = self._require_policy()
        client = context.client
        sni = self._normalise(client.sni) if client.sni else None
        target, dest_ip = self._destination(context)
        given = tuple(n for n in (sni, target) if n)
        if sni and target and not _is_explicit(client):
            given = (sni,)  # transparent: the original destination is an address, not a name
        started = time.perf_counter()
        cd = engine.decide_stream(
            loaded.policy,
            given,
            self._principal(loaded, client),
            self.clock.now(),
            self._overrides(),
            dest_ip=dest_ip,
        )
        self._count_connection(cd, started)
        decision_id = self._record_connection(cd, client, sni, stage="tcp")
        passes = cd.verdict is ConnectionVerdict.PASS
        if not passes:
            log.info("stream_refused", decision_id=decision_id, host=cd.decision.host)
        return passes

    def _gateway_refusal(
        self, loaded: LoadedPolicy, client: connection.Client, host: str, port: int
    ) -> Decision | None:
        """A block when `host:port` (as the client asked for it) is the proxy itself or a service
        of the gateway the policy does not list (engine/gateway.py), else None."""
        name = self._normalise(host)
        listener = self._own_sockets.is_listener(name, port)
        if not listener and not _on_gateway(name):
            return None
        policy = loaded.policy
        return engine_gateway.decide_gateway(
            policy.version,
            policy.gateway_services,
            name,
            port,
            self._principal(loaded, client),
            listener=listener,
        )

    def _destination(self, context: Context) -> tuple[str | None, str | None]:
        """Where the connection goes, as the client gave it: (normalised target, the target if it
        is an address)."""
        address = context.server.address
        if not address:
            return None, None
        target = self._normalise(str(address[0]))
        return target, target if _is_ip(target) else None

    def udp_start(self, flow: udp.UDPFlow) -> None:
        """QUIC (UDP 443/80) cannot be inspected; dropping it makes browsers fall back to TCP."""
        address = flow.server_conn.address
        if address and address[1] in (80, 443):
            flow.kill()

    def _decide_connection(self, data: tls.ClientHelloData) -> None:
        loaded = self._require_policy()
        client = data.context.client
        # mitmproxy sets the client's SNI from this very ClientHello just before the hook (TLS and
        # QUIC layers alike); `client_hello.sni` would parse and validate it a second time.
        raw_sni = client.sni
        sni = self._normalise(raw_sni) if raw_sni else None
        ech = _offers_ech(data.client_hello)
        target, dest_ip = self._destination(data.context)
        # Explicit proxy: the CONNECT target is a second name for this connection.
        also = (target,) if target and not dest_ip and _is_explicit(client) else ()
        started = time.perf_counter()
        cd = engine.decide_connection_names(
            loaded.policy,
            sni,
            self._principal(loaded, client),
            self.clock.now(),
            self._overrides(),
            also=also,
            dest_ip=dest_ip,
            ech=ech,
        )
        self._count_connection(cd, started)
        self._record_connection(cd, client, sni, stage="connection", ech=ech)
        self._apply_connection(data, cd.verdict)

    def _apply_connection(self, data: tls.ClientHelloData, verdict: ConnectionVerdict) -> None:
        if verdict is ConnectionVerdict.PASS:
            data.ignore_connection = True
        elif verdict is ConnectionVerdict.BLOCK:
            data.ignore_connection = True
            self._refused.add(data.context.client)
        # INSPECT: let mitmproxy decrypt; every request is decided in requestheaders.

    def _fail_connection(self, data: tls.ClientHelloData, exc: Exception) -> None:
        log.error("hook_failed", hook="tls_clienthello", error=_brief(exc), where=_where(exc))
        client = data.context.client
        closed = self._fail_mode() == "closed"
        try:
            decision = self._error_decision(
                client, data.client_hello.sni or "", closed, _brief(exc)
            )
            verdict = ConnectionVerdict.BLOCK if closed else ConnectionVerdict.INSPECT
            self._record_connection(
                ConnectionDecision(verdict, decision), client, None, stage="connection"
            )
        except Exception as e:
            log.error("decision_log_failed", error=repr(e))
        if closed:
            self._apply_connection(data, ConnectionVerdict.BLOCK)

    # ----------------------------------------------------------------- request-level hooks

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        """Decide before the body arrives, so a blocked upload is never streamed upstream."""
        if flow.response or flow.error or not flow.live:
            return
        try:
            self._decide_request(flow)
        except Exception as e:
            self._fail_request(flow, e, hook="requestheaders")

    def request(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        """The whole request is here. Body-based checks (uploads, issue 7) belong in this hook.

        The block page's forms and held uploads are answered here (they need the body), as a
        coroutine mitmproxy awaits; every other request returns at once, which keeps the common
        path free of coroutine overhead. A request that reached no decision in `requestheaders`
        (it failed without blocking) is refused: nothing leaves the proxy undecided.
        """
        if flow.response or flow.error or not flow.live:
            return None
        if FORM_KEY in flow.metadata or uploads.HELD_KEY in flow.metadata:
            return self._request_with_body(flow)
        if SIGN_IN_KEY in flow.metadata:
            return self._answer_portal(flow, flow.metadata.pop(SIGN_IN_KEY))
        if METADATA_KEY not in flow.metadata and self._fail_mode() == "closed":
            self._fail_request(flow, RuntimeError("request reached no decision"), hook="request")
        return None

    async def _request_with_body(self, flow: http.HTTPFlow) -> None:
        """A block-page form submission or a held upload: answered on the body."""
        try:
            if FORM_KEY in flow.metadata:
                await self._answer_form(flow, flow.metadata[FORM_KEY])
            else:
                await self._decide_held_upload(flow, flow.metadata.pop(uploads.HELD_KEY))
        except Exception as e:
            self._fail_request(flow, e, hook="request")

    async def _decide_held_upload(self, flow: http.HTTPFlow, held: uploads.HeldUpload) -> None:
        """The body held in `requestheaders` is in: inspect it, record, block or forward."""
        loaded = self._require_policy()
        try:
            decision, extra = await uploads.decide_held(flow, held, loaded.policy.uploads)
        finally:
            if held.reservation is not None:
                held.reservation.release()  # inspected: its bytes go back to the budget
        decision_id = self._record_request(flow, decision, loaded, held.sni, extra)
        flow.metadata[METADATA_KEY] = Verdict(
            decision_id, str(decision.action), str(decision.basis), decision.rule_id, held.hosts
        )
        if decision.action is Action.BLOCK:
            flow.response = self._block_response(
                flow, decision, decision_id, self.clock.now(), loaded
            )

    async def _answer_form(self, flow: http.HTTPFlow, principal: Principal) -> None:
        """Hand a block-page form submission to the overrides' forms (off the event loop)."""
        req = flow.request
        host = self._request_hosts(flow)[0]
        form = FormRequest(
            method=req.method,
            path=req.path,
            host=host,
            principal=principal,
            body=req.get_content(strict=False) or b"",
            content_type=req.headers.get("content-type"),
            origin=req.headers.get("origin"),
            sec_fetch_site=req.headers.get("sec-fetch-site"),
        )
        answer = await self.forms.handle_async(form)
        if answer.event:
            from socialguard.audit import new_decision_id

            self._write({"type": "form", "decision_id": new_decision_id(), **answer.event})
        flow.metadata[METADATA_KEY] = Verdict("form", "form", "form", None, (host,))
        flow.response = http.Response.make(answer.status, answer.body, guarded(answer.headers))

    def _sign_in_first(self, flow: http.HTTPFlow, loaded: LoadedPolicy, peer: _Peer) -> bool:
        """The sign-in page's requests, and requests of devices that must sign in first
        (engine/signin.py): answered here, never forwarded. False: decide as usual."""
        from socialguard.engine import signin

        policy = loaded.policy
        hosts = self._request_hosts(flow, None, peer)
        to_portal = [signin.is_portal(policy, h) for h in hosts]
        if all(to_portal):
            self._take_portal(flow, loaded, peer, hosts)
            return True
        principal = peer.principal
        if not any(to_portal) and not (
            signin.must_sign_in(policy, principal) and signin.sign_in_concerns(policy, hosts)
        ):
            return False
        # sent to sign in; or a request naming the sign-in page and another site at once
        decision = signin.sign_in_decision(policy, principal, hosts[0])
        req = flow.request
        decision_id = self._record_request(
            flow, decision, loaded, peer.sni, {"hosts": list(hosts)}, peer=peer
        )
        flow.metadata[METADATA_KEY] = Verdict(
            decision_id, decision.action, decision.basis, None, hosts
        )
        page = (
            req.method in ("GET", "HEAD")
            and blockpage.format_for(req.headers) is blockpage.BlockFormat.HTML
        )
        answer = self.sign_in.send_to_sign_in(_request_url(req, hosts[0]), page=page)
        flow.response = http.Response.make(answer.status, answer.body, answer.headers)
        bodies.refuse_unread(flow)  # its body (credentials, an upload) is never read
        return True

    def _take_portal(
        self, flow: http.HTTPFlow, loaded: LoadedPolicy, peer: _Peer, hosts: tuple[str, ...]
    ) -> None:
        """A request to the sign-in page: recorded, then answered in `request` (with its small
        body), or at once when it is plain HTTP carrying a form (refused unread)."""
        from socialguard.engine import signin

        from .signin import PortalRequest

        decision = signin.portal_decision(loaded.policy, peer.principal, hosts[0])
        decision_id = self._record_request(flow, decision, loaded, peer.sni, {}, peer=peer)
        flow.metadata[METADATA_KEY] = Verdict(
            decision_id, decision.action, decision.basis, None, hosts
        )
        req = flow.request
        portal_req = PortalRequest(
            method=req.method,
            scheme=req.scheme,
            path=req.path,
            client_ip=peer.client_ip,
            principal=peer.principal,
            mac=peer.principal.mac,
            content_type=req.headers.get("content-type"),
            origin=req.headers.get("origin"),
            sec_fetch_site=req.headers.get("sec-fetch-site"),
        )
        if req.scheme != "https" or not bodies.fits(req, bodies.FORM_BODY_LIMIT):
            # plain HTTP (nothing typed crosses in clear), or a body over the forms' limit
            if req.scheme != "https":
                answer = self.sign_in.plain_http(portal_req)
            else:
                answer = self.sign_in.too_large(portal_req)
            self._portal_response(flow, answer)
            bodies.refuse_unread(flow)
            return
        flow.metadata[SIGN_IN_KEY] = portal_req

    async def _answer_portal(self, flow: http.HTTPFlow, portal_req: Any) -> None:
        """The sign-in page's answer (the provider and the store are called off the loop)."""
        try:
            body = flow.request.get_content(strict=False) or b""
            answer = await self.sign_in.handle_async(dataclasses.replace(portal_req, body=body))
            self._portal_response(flow, answer)
        except Exception as e:
            self._fail_request(flow, e, hook="request")

    def _portal_response(self, flow: http.HTTPFlow, answer: Any) -> None:
        if answer.event:
            from socialguard.audit import new_decision_id

            self._write({"type": "sign_in", "decision_id": new_decision_id(), **answer.event})
        flow.response = http.Response.make(answer.status, answer.body, answer.headers)

    def _take_form(self, flow: http.HTTPFlow, principal: Principal) -> None:
        """The block page's own forms: answered in `request` once the (small) body is in."""
        if bodies.fits(flow.request, bodies.FORM_BODY_LIMIT):
            flow.metadata[FORM_KEY] = principal
        else:
            self._refuse_form(flow, principal)

    def _refuse_form(self, flow: http.HTTPFlow, principal: Principal) -> None:
        """A form submission whose body is over the forms' limit (or undeclared): closed at its
        headers, its body never read, and recorded as a form event."""
        from socialguard.audit import new_decision_id

        host = self._request_hosts(flow)[0]
        self._write(
            {
                "type": "form",
                "decision_id": new_decision_id(),
                "event": "block_page_form",
                "form": flow.request.path.split("?", 1)[0],
                **form_person(principal),
                "outcome": "body_too_large",
                "declared": bodies.declared_length(flow.request),
                "limit": bodies.FORM_BODY_LIMIT,
            }
        )
        flow.metadata[METADATA_KEY] = Verdict("form", "form", "form", None, (host,))
        bodies.close_unread(flow, bodies.FORM_BODY_LIMIT)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        """Every response streams to the client as it arrives: the filter needs no response body,
        and a buffered one (5 GB, or slow) would sit whole in the proxy's memory."""
        response = flow.response
        if response is not None:
            response.stream = True

    def _decide_request(self, flow: http.HTTPFlow) -> None:
        """Decide one request, record it, and block it or let it go.

        This runs for every request, between mitmproxy's own work, where each Python call costs
        several times what it does in a tight loop: the common request (a name the connection has
        asked about before, no body, no upgrade) reads mitmproxy's raw bytes rather than its
        decoding properties, takes the connection's kept answer without calling the engine, and
        reads the clock only when something needs the time.
        """
        loaded = self._loaded
        if loaded is None:
            raise NoPolicy("no valid policy is loaded")
        client = flow.client_conn
        req = flow.request
        user = self._users.get(client) if self._proved_users else None
        if loaded.htpasswd is not None and user is None and _is_explicit(client):
            user = self._authenticate(flow, loaded)
            if user is None:
                return  # 407 already set
        peer = self._peer(loaded, client, user)
        data = req.data
        if self.sign_in is not None and self._sign_in_first(flow, loaded, peer):
            return
        if self.forms is not None and data.path.startswith(_FORM_PREFIX):
            self._take_form(flow, peer.principal)
            return
        metrics = self._metrics
        started = time.perf_counter() if metrics is not None else 0.0
        headers = req.headers
        hosts = self._request_hosts(flow, headers, peer)
        sni = peer.sni  # the connection's, worked out once
        policy = loaded.policy
        # Read once for the record: the text of the few methods and schemes there are, else
        # mitmproxy's decoding (what its properties give).
        scheme = _SCHEMES.get(data.scheme) or req.scheme
        method = _METHODS.get(data.method) or req.method
        decision, now = self._request_decision(flow, loaded, peer, hosts, headers)
        extra = _request_extra(hosts, decision, headers)
        if decision.action is Action.ALLOW:  # issue 7: sign-in headers, uploads (proxy/uploads.py)
            if policy.accounts is not None and any(map(_is_sign_in_host, hosts)):
                extra.update(uploads.restrict_sign_in(flow, policy.accounts, hosts))
            if uploads.may_carry_body(headers, data.http_version, method):
                plan = self._plan_upload(flow, peer, policy, hosts, headers, decision, extra)
                if plan.held is not None:
                    flow.metadata[uploads.HELD_KEY] = plan.held  # decided in `request`
                    return
                decision, extra = plan.decision, dict(plan.extra)
        refused = decision.action is Action.BLOCK and _refused_unread(req, extra)
        if extra or "upgrade" in headers:
            decision_id = self._record_request(
                flow,
                decision,
                loaded,
                sni,
                extra,
                upgrade=headers.get("upgrade", ""),
                scheme=scheme,
                method=method,
                peer=peer,
            )
        else:  # the common record, without _record_request's reading of what is known here
            path = req.path if peer.log_paths else None
            decision_id = self._record_plain(decision, peer.client_ip, scheme, method, path, sni)
        # Action and Basis are StrEnums: the members are the strings.
        flow.metadata[METADATA_KEY] = Verdict(
            decision_id, decision.action, decision.basis, decision.rule_id, hosts
        )
        if decision.action is Action.BLOCK:
            self._answer_block(flow, decision, decision_id, now, loaded, headers, refused=refused)
        if metrics is not None:
            _count_request(metrics, decision, extra, started)

    def _request_decision(
        self,
        flow: http.HTTPFlow,
        loaded: LoadedPolicy,
        peer: _Peer,
        hosts: tuple[str, ...],
        headers: http.Headers,
    ) -> tuple[Decision, datetime | None]:
        """The request's decision, and the time it was read at (None: no clock was needed).

        The gateway's own sockets and services first, by the destination the request goes to;
        then the connection's kept answer for a name no rule concerns; else the engine."""
        data = flow.request.data
        refusal = self._gateway_refusal(loaded, flow.client_conn, data.host, data.port)
        if refusal is not None:
            return refusal, None
        policy = loaded.policy
        # transparent mode: the original destination's network may be named by a rule
        by_network = not peer.explicit and bool(policy.ip_index.entries) and _is_ip(data.host)
        kept = peer.by_host
        if not by_network and kept is not None and kept[0] is hosts:  # the very tuple kept
            return kept[1], None
        now = self.clock.now()
        _forward_decided_path(flow.request, policy, hosts)
        decision = self._decision(peer, policy, hosts, flow.request, headers, now)
        if by_network:
            dest = _facts(flow.request, _normalised(data.host), peer.sni, headers, upload=False)
            network = engine.decide_network(policy, dest, peer.principal, now, self._overrides())
            if network is not None:
                decision = _strictest([decision, network])
        return decision, now

    def _answer_block(  # noqa: PLR0917 - the request's facts, from the one call site
        self,
        flow: http.HTTPFlow,
        decision: Decision,
        decision_id: str,
        now: datetime | None,
        loaded: LoadedPolicy,
        headers: http.Headers,
        *,
        refused: bool,
    ) -> None:
        """The block page, or, for a body too large to read first, the request closed unread."""
        if refused:
            bodies.close_unread(flow, bodies.ANSWERED_BODY_LIMIT)
            return
        flow.response = self._block_response(
            flow, decision, decision_id, now or self.clock.now(), loaded, headers=headers
        )
        flow.request.stream = False  # answered after its small body: mitmproxy cannot stream it

    def _plan_upload(  # noqa: PLR0917 - the request's facts, from the one call site
        self,
        flow: http.HTTPFlow,
        peer: _Peer,
        policy: CompiledPolicy,
        hosts: tuple[str, ...],
        headers: http.Headers,
        decision: Decision,
        extra: dict[str, Any],
    ) -> uploads.HeadersPlan:
        """An allowed request that may carry a body, put to the policy's upload rules."""
        upload = _facts(flow.request, hosts[0], peer.sni, headers, upload=True)
        now, overrides = self.clock.now(), self._overrides()
        return uploads.plan_request(
            flow,
            decision,
            policy.uploads,
            # a partial, not a lambda: a closure would make every local it names a cell
            functools.partial(_ask, policy, hosts, upload, peer.principal, now, overrides),
            sni=peer.sni,
            hosts=hosts,
            extra=extra,
            budget=self._held,
        )

    def _decision(  # noqa: PLR0917 - the engine's arguments, from the one hot-path call site
        self,
        peer: _Peer,
        policy: CompiledPolicy,
        hosts: tuple[str, ...],
        req: http.Request,
        headers: http.Headers,
        now: datetime,
    ) -> Decision:
        """The engine's answer for the request's names, the strictest of them. Where no rule
        concerns the one name, the answer is kept on the connection (`_Peer.by_host`): it depends
        on nothing else (engine.decided_by_host), and most of a connection's requests go to one
        host, so those need neither the engine nor the request's other facts."""
        facts = _facts(req, hosts[0], peer.sni, headers, upload=False)
        overrides = self._overrides()
        if len(hosts) == 1:
            decision = engine.decide(policy, facts, peer.principal, now, overrides)
            if engine.decided_by_host(policy, hosts[0]):
                peer.by_host = (hosts, decision)
            return decision
        return _ask(policy, hosts, facts, peer.principal, now, overrides)

    def _peer(self, loaded: LoadedPolicy, client: connection.Client, user: str | None) -> _Peer:
        """This connection's standing facts (see _Peer), worked out again when one changed."""
        peer = self._peers.get(client)
        neighbours = self._neighbours
        identity = self.identity
        if (
            peer is not None
            and peer.loaded is loaded
            and peer.user == user
            and (neighbours is None or neighbours.lookup(peer.client_ip) == peer.mac)
            and (not identity.active or identity.lookup(peer.client_ip) == peer.binding)
        ):
            return peer
        ip = _client_ip(client)
        raw_sni = client.sni
        # read before the principal is built: a change in between re-resolves the next request
        seen = identity.lookup(ip) if identity.active else None
        peer = _Peer(
            loaded,
            user,
            neighbours.lookup(ip) if neighbours is not None else None,
            ip,
            self._principal(loaded, client, user, look_up_user=False),
            _normalised(raw_sni) if raw_sni else None,
            _is_explicit(client),
            _logs_paths(loaded),
            seen,
        )
        if len(self._peers) >= PRINCIPAL_CACHE_SIZE:  # a backstop: client_disconnected drops them
            self._peers.clear()
        self._peers[client] = peer
        return peer

    def error(self, flow: http.HTTPFlow) -> None:
        """A flow failed (the client went away mid-upload): a held body's bytes go back."""
        held = flow.metadata.get(uploads.HELD_KEY)
        if held is not None and held.reservation is not None:
            held.reservation.release()

    def client_disconnected(self, client: connection.Client) -> None:
        self._peers.pop(client, None)
        bodies.close_client_transport(client)

    def _request_hosts(
        self,
        flow: http.HTTPFlow,
        headers: http.Headers | None = None,
        peer: _Peer | None = None,
    ) -> tuple[str, ...]:
        """Every name this request is addressed to, normalised, Host/:authority first.

        In transparent mode `request.host` is only the original destination IP (where DNS pointed),
        decided at connection level; with an explicit proxy it is the name the client asked for.
        `headers` are the request's (read again when not given);
        `peer` the connection's facts (worked out here when not given). The names are remembered
        on the peer with what they were read from, and a request read from the same Host header,
        :authority, target and HTTP version gets them again without normalising them again.
        """
        req = flow.request
        if headers is None:
            headers = req.headers
        data = req.data
        # Everything the names are read from besides the connection's standing facts.
        source = (headers.get_all("host"), data.authority, data.host, data.http_version)
        if peer is not None and peer.hosts_from == source:
            return peer.hosts
        client = flow.client_conn
        if peer is None:
            explicit = _is_explicit(client)
            sni = _normalised(client.sni) if client.sni else None
        else:
            explicit, sni = peer.explicit, peer.sni
        hosts = names.request_names(headers, data, explicit=explicit, sni=sni)
        if peer is not None:
            peer.hosts, peer.hosts_from = hosts, source
        return hosts

    def _fail_request(self, flow: http.HTTPFlow, exc: Exception, *, hook: str) -> None:
        log.error("hook_failed", hook=hook, error=_brief(exc), where=_where(exc))
        closed = self._fail_mode() == "closed"
        decision_id = "unrecorded"
        now = self._safe_now()
        decision: Decision | None = None
        try:
            decision = self._error_decision(
                flow.client_conn, flow.request.pretty_host, closed, _brief(exc)
            )
            decision_id = self._record_request(flow, decision, self._loaded, None, {"hook": hook})
            flow.metadata[METADATA_KEY] = Verdict(
                decision_id, str(decision.action), str(decision.basis), None, (decision.host,)
            )
        except Exception as e:
            log.error("decision_log_failed", error=repr(e))
        if self._metrics is not None:
            self._metrics.decision("block" if closed else "allow", "error", 0.0)
        if not closed:
            return
        try:
            assert decision is not None
            flow.response = self._block_response(flow, decision, decision_id, now, self._loaded)
        except Exception as e:
            log.error("block_page_failed", error=repr(e))
            flow.response = http.Response.make(
                403,
                f"Blocked by socialguard (internal error). Reference: {decision_id}\n",
                guarded({"Content-Type": "text/plain; charset=utf-8"}),
            )
        if hook == "requestheaders":
            bodies.refuse_unread(flow)  # the body is still unread: a large one stays so

    # ----------------------------------------------------------------- facts, engine, log, answer

    def _require_policy(self) -> LoadedPolicy:
        loaded = self._loaded
        if loaded is None:
            raise NoPolicy("no valid policy is loaded")
        return loaded

    def _fail_mode(self) -> str:
        loaded = self._loaded
        return str(getattr(loaded.policy, "fail_mode", "closed")) if loaded else "closed"

    def _safe_now(self) -> datetime:
        try:
            return self.clock.now()
        except Exception:
            return SystemClock().now()

    @staticmethod
    def _normalise(raw: str) -> str:
        return _normalised(raw)

    def _overrides(self) -> Any:
        if self._refresher is not None:
            return self._refresher.current
        return engine.Overrides.EMPTY

    def _principal(
        self,
        loaded: LoadedPolicy,
        client: connection.Client,
        user: str | None = None,
        *,
        look_up_user: bool = True,
    ) -> Principal:
        """Who is asking. `user` None with `look_up_user`: the user the tunnel's CONNECT proved."""
        ip = _client_ip(client)
        if user is None and look_up_user and self._proved_users:
            user = self._users.get(client)
        mac = self._neighbours.lookup(ip) if self._neighbours is not None else None
        binding = None
        # The same few thousand clients ask all day: remember who they are for this policy.
        key: tuple[object, ...] = (loaded.policy.version, ip, user, mac)
        if self.identity.active:  # who an identity source says holds the address (and its MAC)
            binding = self.identity.person(ip)
            if mac is None:
                mac = self.identity.lease_mac(ip)
            if binding is not None:
                key = (*key, mac, binding.user, binding.source, binding.groups)
            else:
                key = (*key, mac)
        principal = self._principals.get(key)
        if principal is None:
            if len(self._principals) >= PRINCIPAL_CACHE_SIZE:
                self._principals.clear()
            principal = engine.resolve_principal(
                loaded.policy, ip, user=user, mac=mac, binding=binding
            )
            self._principals[key] = principal
        return principal

    def _count_connection(self, cd: ConnectionDecision, started: float) -> None:
        """The connection decision in the metrics, when an admin endpoint serves them."""
        if self._metrics is not None:
            self._metrics.decision(
                str(cd.verdict),
                str(cd.decision.basis),
                time.perf_counter() - started,
                stage="connection",
            )

    def _authenticate(self, flow: http.HTTPFlow, loaded: LoadedPolicy) -> str | None:
        """Proxy Basic auth against the policy's htpasswd; on failure the flow gets a 407."""
        user = _check_basic(flow.request.headers.get("Proxy-Authorization", ""), loaded.htpasswd)
        if user is not None:
            flow.request.headers.pop("Proxy-Authorization", None)
            return user
        flow.response = http.Response.make(
            407,
            "Proxy authentication required: sign in with your district account.\n",
            guarded(
                {
                    "Proxy-Authenticate": f'Basic realm="{AUTH_REALM}"',
                    "Content-Type": "text/plain; charset=utf-8",
                }
            ),
        )
        bodies.refuse_unread(flow)  # a large body is not read to ask for credentials
        return None

    def _log(self) -> Any:
        """The open decision log (an AuditLog); refusing to decide without one."""
        if self._audit is None:
            raise RuntimeError("the decision log is not open")
        return self._audit

    def _write(self, event: dict[str, Any]) -> None:
        self._log().write(event)

    def _record_connection(
        self,
        cd: ConnectionDecision,
        client: connection.Client,
        sni: str | None,
        *,
        stage: str,
        ech: bool | None = None,
    ) -> str:
        """Write a connection's decision; return its id. Written from the remembered encoding
        (EncodedDecisions): a client opens connection after connection to the same sites."""
        decision_id = audit_schema.new_decision_id()
        extra: tuple[tuple[str, Hashable], ...] = (("verdict", str(cd.verdict)),)
        if ech is not None:
            extra = (*extra, ("ech", ech))
        self._log().write_encoded(
            self._encoded.fields(
                cd.decision,
                decision_id=decision_id,
                stage=stage,
                client=_client_ip(client),
                sni=sni,
                extra=extra,
            )
        )
        return decision_id

    def _record_request(
        self,
        flow: http.HTTPFlow,
        decision: Decision,
        loaded: LoadedPolicy | None,
        sni: str | None,
        extra: dict[str, Any],
        *,
        upgrade: str | None = None,
        scheme: str | None = None,
        method: str | None = None,
        peer: _Peer | None = None,
    ) -> str:
        """Write the request's decision to the log; return its id. `upgrade`, `scheme` and
        `method` are the request's, `peer` its connection's facts, when the caller has them
        already (None: read here)."""
        log_paths = peer.log_paths if peer is not None else _logs_paths(loaded)
        req = flow.request
        scheme = req.scheme if scheme is None else scheme
        method = req.method if method is None else method
        if upgrade is None:
            upgrade = req.headers.get("upgrade", "")
        if upgrade.lower() == "websocket":
            extra = {**extra, "websocket": True}
        path = req.path if log_paths else None
        client = peer.client_ip if peer is not None else _client_ip(flow.client_conn)
        if not extra:
            return self._record_plain(decision, client, scheme, method, path, sni)
        decision_id = audit_schema.new_decision_id()
        self._write(
            audit_schema.decision_event(
                decision,
                decision_id=decision_id,
                stage="request",
                client=client,
                scheme=scheme,
                method=method,
                path=path,
                sni=sni,
                **extra,
            )
        )
        return decision_id

    def _record_plain(  # noqa: PLR0917 - one hot-path call site and one more
        self,
        decision: Decision,
        client: str,
        scheme: str,
        method: str,
        path: str | None,
        sni: str | None,
    ) -> str:
        """The common request record (no extra facts), written from its remembered encoding:
        only the decision id differs between the records of a repeated decision."""
        decision_id = audit_schema.new_decision_id()
        self._log().write_encoded(
            self._encoded.fields(
                decision,
                decision_id=decision_id,
                stage="request",
                client=client,
                scheme=scheme,
                method=method,
                path=path,
                sni=sni,
            )
        )
        return decision_id

    def _error_decision(
        self, client: connection.Client, host: str, closed: bool, detail: str
    ) -> Decision:
        loaded = self._loaded
        what = "blocked" if closed else "allowed"
        return Decision(
            action=Action.BLOCK if closed else Action.ALLOW,
            basis=Basis.ERROR,
            reason=(
                f"socialguard could not decide this ({detail}); the district's failure mode "
                f"({'closed' if closed else 'open'}) applies, so it is {what}."
            ),
            principal=Principal(client_ip=_client_ip(client)),
            policy_version=loaded.policy.version if loaded else "none",
            host=host or "unknown",
        )

    def _block_response(
        self,
        flow: http.HTTPFlow,
        decision: Decision,
        decision_id: str,
        now: datetime,
        loaded: LoadedPolicy | None,
        *,
        headers: http.Headers | None = None,
    ) -> http.Response:
        """The block page (or short 403) for this request."""
        if headers is None:
            headers = flow.request.headers
        fmt = blockpage.format_for(headers)
        bypass_html = ""
        if fmt is blockpage.BlockFormat.HTML and decision.bypass and self.forms is not None:
            bypass_html = self.forms.links(
                decision, url=flow.request.url, decision_id=decision_id, now=now
            )
        district = getattr(loaded.policy, "district", None) if loaded else None
        tz = getattr(district, "timezone", None)
        local = now.astimezone(tz) if tz is not None else now
        answer = ""
        if fmt is blockpage.BlockFormat.HTML and local.tzinfo is not None:
            answer = block_page_answer(self._refresher, decision, now=now, zone=local.tzinfo)
        notice = blockpage.BlockNotice(
            host=decision.host,
            reason=decision.reason,
            reference=decision_id,
            time=local.strftime("%Y-%m-%d %H:%M %Z"),
            district=getattr(district, "name", None) or "district",
            rule=decision.rule_id,
            category=decision.category,
            who=describe_principal(decision.principal),
            contact=getattr(district, "contact", None),
            policy_url=getattr(district, "policy_url", None),
            bypass_html=bypass_html,
            service=loaded.policy.services.name_of(decision.service) if loaded else None,
            answer_html=answer,
        )
        out = blockpage.render(notice, fmt)
        return make_response(
            out.status,
            out.body,
            guarded({"Content-Type": out.content_type, "X-SocialGuard-Reference": decision_id}),
        )


# --------------------------------------------------------------------- pure helpers


@functools.cache
def _response_template() -> http.Response:
    return http.Response.make(200)


def make_response(status: int, body: bytes, headers: dict[str, str]) -> http.Response:
    """What `http.Response.make(status, body, headers)` returns, without its type check.

    Under Python's default `__debug__` mitmproxy type-checks every field of every new message
    (~85 us: most of a blocked request's hook). The fields here are of the checked types by
    construction, so the response's data is copied from one `make` built once, then filled in as
    `make` fills it (the headers given, then Content-Length). Only for headers without
    Content-Encoding or Transfer-Encoding, which `make` would treat specially.
    """
    fields = [
        (name.encode("utf-8", "surrogateescape"), value.encode("utf-8", "surrogateescape"))
        for name, value in headers.items()
    ]
    fields.append((b"content-length", str(len(body)).encode("ascii")))
    template = _response_template()
    data = copy.copy(template.data)
    data.status_code = status
    data.reason = status_codes.RESPONSES.get(status, "").encode()
    data.headers = http.Headers(fields)
    data.content = body
    data.trailers = None
    data.timestamp_start = time.time()
    data.timestamp_end = time.time()
    response = copy.copy(template)
    response.data = data
    return response


def describe_principal(p: Principal) -> str:
    """Who the proxy took the person to be, in words for the block page: a person an identity
    source named first, with how it knows them ("jdoe, identified by RADIUS accounting …")."""
    if p.user and p.source:
        named = f"{p.user}, {describe_source(p.source)}; "
        return named + describe_principal(dataclasses.replace(p, user=None, source=None))
    parts = []
    if p.user:
        parts.append(f"user {p.user}")
    if p.device:
        parts.append(f"device {p.device}")
    parts.append(f"address {p.client_ip}")
    if p.mac:
        parts.append(f"MAC {p.mac}")
    groups = ", ".join(sorted(p.groups)) if p.groups else "no group"
    return f"{', '.join(parts)} ({groups})"


_normalised = names.normalised


def _settle_heap() -> None:
    """Move the compiled policy out of the garbage collector's sight.

    A million-domain policy is millions of long-lived objects; every full collection would walk
    them all while requests wait. Freezing after a (re)load makes them permanent; the previous
    policy is unfrozen and collected first, so a reload does not leak it. Costs one full
    collection per reload, off the event loop's hot path.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def _logs_paths(loaded: LoadedPolicy | None) -> bool:
    """Does the policy ask for request paths in the decision log (`logging.paths`)?"""
    return bool(loaded and getattr(getattr(loaded.policy, "logging", None), "paths", False))


def _mismatch(hosts: tuple[str, ...], decision: Decision) -> dict[str, Any]:
    """A request naming several hosts (domain fronting?): warn, and say so in its record."""
    log.warning(
        "host_mismatch",
        hosts=list(hosts),
        client=decision.principal.client_ip,
        kept=decision.host,
        action=str(decision.action),
    )
    return {"hosts": list(hosts)}


def _offers_ech(hello: tls.ClientHello) -> bool:
    """Does the ClientHello carry an encrypted_client_hello extension (0xfe0d)?

    Where the extension is, its type's two bytes are in the raw hello; most hellos have those
    two bytes nowhere, and for them the parsed extension list, which mitmproxy builds in Python
    (a few dozen lines every new connection), is not needed. Where the bytes are found (the
    extension, or a chance match in the random or a key share) the list decides.
    """
    try:
        raw = hello.raw_bytes(wrap_in_record=False)
    except NotImplementedError:  # DTLS: no raw hello to search
        raw = None
    if raw is not None and _ECH_TYPE_BYTES not in raw:
        return False
    return ECH_EXTENSION in [ext for ext, _ in hello.extensions]


def _ask(  # noqa: PLR0917 - the engine's arguments, with the names to ask about
    policy: CompiledPolicy,
    hosts: tuple[str, ...],
    facts: Request,
    principal: Principal,
    now: datetime,
    overrides: Any,
) -> Decision:
    """The engine's answer for every name the request carries (`facts` with each host in
    turn); the strictest wins."""
    return _strictest(
        [
            engine.decide(policy, dataclasses.replace(facts, host=host), principal, now, overrides)
            for host in hosts
        ]
    )


def _facts(
    req: http.Request, host: str, sni: str | None, headers: http.Headers, *, upload: bool
) -> Request:
    """The request as the engine sees it, for one of its names; `upload`: asked about as an
    upload (the policy's upload rules apply to it)."""
    return Request(
        host, req.scheme, req.method, req.path or "/", req.port, sni, upload,
        headers.get("content-type"), headers.get("accept"),
    )  # fmt: skip


def _refused_unread(req: http.Request, extra: dict[str, Any]) -> bool:
    """Will this blocked request be closed unread (its body too large to read for an answer)?
    If so, its record says so."""
    if bodies.fits(req, bodies.ANSWERED_BODY_LIMIT):
        return False
    extra["answer"] = bodies.REFUSED_UNREAD
    return True


def _forward_decided_path(
    req: http.Request, policy: CompiledPolicy, hosts: tuple[str, ...]
) -> None:
    """Where a `urls:` rule names a host, the engine decides on the normalised path: send the
    origin that path, so what it serves is the page decided on (engine/paths.py). A path with no
    single reading is left as it is: the engine refuses it."""
    if not any(map(policy.decides_on_path, hosts)):
        return
    try:
        target = request_target(req.path or "/")
    except AmbiguousPath:
        return
    if target != req.path:
        req.path = target


def _strictest(decisions: list[Decision]) -> Decision:
    """Block wins over allow; among equals the first (the Host/:authority decision) is kept."""
    for d in decisions:
        if d.action is Action.BLOCK:
            return d
    return decisions[0]


@functools.lru_cache(maxsize=65536)
def _is_sign_in_host(host: str) -> bool:
    """accounts.is_sign_in_host, remembered: most requests go to no vendor's sign-in host."""
    return is_sign_in_host(host)


_is_ip = names.is_ip


def _request_url(req: http.Request, host: str) -> str:
    """The address the person asked for, by the name they used (transparent mode's `host` is
    an address): where the sign-in page sends them back to."""
    scheme = req.scheme
    port = req.port
    default = 443 if scheme == "https" else 80
    authority = host if port == default else f"{host}:{port}"
    if ":" in host and not host.startswith("["):
        authority = f"[{host}]" if port == default else f"[{host}]:{port}"
    return f"{scheme}://{authority}{req.path}"


def _client_ip(client: connection.Client) -> str:
    """The client's address; IPv4-mapped IPv6 (dual-stack listeners) is shown as IPv4."""
    return _canonical_ip(client.peername[0])


@functools.lru_cache(maxsize=65536)
def _canonical_ip(raw: str) -> str:
    ip = ipaddress.ip_address(raw)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


_EXPLICIT_MODES = (mode_specs.RegularMode, mode_specs.UpstreamMode)
# forms.is_form_path, on raw path bytes: the prefix is ASCII without "?", so a path is a form's
# exactly when its bytes start with the prefix's
_FORM_PREFIX = FORM_PREFIX.encode("ascii")
# The text mitmproxy's `method` and `scheme` properties give for the common raw values.
_METHODS = {
    m: m.decode("ascii")
    for m in (b"GET", b"HEAD", b"POST", b"PUT", b"PATCH", b"DELETE", b"OPTIONS", b"CONNECT")
}
_SCHEMES = {b"http": "http", b"https": "https"}


def _is_explicit(client: connection.Client) -> bool:
    return isinstance(client.proxy_mode, _EXPLICIT_MODES)


def _request_extra(
    hosts: tuple[str, ...], decision: Decision, headers: http.Headers
) -> dict[str, Any]:
    """The record's facts beyond the decision: names that disagree, and whether the request
    opened a page (a visit, which reports count: proxy/visits.py)."""
    extra: dict[str, Any] = {} if len(hosts) == 1 else _mismatch(hosts, decision)
    if is_visit(headers):
        extra["visit"] = True
    return extra


def _count_request(metrics: Any, decision: Decision, extra: dict[str, Any], started: float) -> None:
    """The request's figures for /metrics: its decision and time, and its service's counts."""
    metrics.decision(str(decision.action), str(decision.basis), time.perf_counter() - started)
    if decision.service is not None:
        metrics.service(decision.service, str(decision.action), "visit" in extra)


def _check_basic(value: str, htpasswd: Any) -> str | None:
    """The user name if `value` is valid Basic credentials in `htpasswd`, else None."""
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "basic" or not token:
        return None
    try:
        user, sep, password = binascii.a2b_base64(token.strip()).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    if not sep or not user:
        return None
    return user if htpasswd.check_password(user, password) else None


def _gateway_mode(spec: str) -> bool:
    """transparent and wireguard mode put the proxy in the clients' path, so it sees their MACs."""
    return spec.split("@", maxsplit=1)[0].split(":", maxsplit=1)[0] in ("transparent", "wireguard")


ERROR_TEXT_MAX = 300


def _brief(exc: BaseException) -> str:
    """An exception for the operational log and the block page, capped: its message may quote
    what the client sent (a megabyte Host header), and one request must not make one huge line."""
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= ERROR_TEXT_MAX else text[:ERROR_TEXT_MAX] + "…"


def _where(exc: BaseException) -> str:
    """Where an exception was raised (file:line in function): enough to find it, cheap to log.

    A full rendered traceback (with locals) of a hook failure can cost seconds and megabytes when
    the policy holds a million domains; the hot path must not pay that.
    """
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return type(exc).__name__
    f = frames[-1]
    return f"{f.filename}:{f.lineno} in {f.name}"


def _listen_addrs() -> list[Any]:
    """The addresses mitmproxy's listeners are bound to."""
    server = ctx.master.addons.get("proxyserver")
    return list(server.listen_addrs()) if server is not None else []


@functools.lru_cache(maxsize=65536)
def _on_gateway(host: str) -> bool:
    """engine.gateway.is_gateway_host, remembered (asked for every request's destination)."""
    return engine_gateway.is_gateway_host(host)


def _mitmproxy_next_layer(nextlayer: layer.NextLayer) -> None:
    """mitmproxy's own choice of layer (its next_layer addon), asked again."""
    mitmproxy_choice = ctx.master.addons.get("nextlayer")
    if mitmproxy_choice is None:
        raise RuntimeError("mitmproxy's next_layer addon is not loaded")
    mitmproxy_choice.next_layer(nextlayer)


def _options_touched() -> bool:
    """Has anyone set socialguard's options (or the connection strategy) away from the defaults?"""
    return any(ctx.options.has_changed(k) for k in (*OPTION_NAMES, "connection_strategy"))


def _require_lazy() -> None:
    if ctx.options.connection_strategy != "lazy":
        raise exceptions.OptionsError(
            "socialguard needs connection_strategy=lazy: under 'eager' mitmproxy connects to the "
            "server before the ClientHello is seen, so refused TLS connections would go through "
            "(add --set connection_strategy=lazy)"
        )
