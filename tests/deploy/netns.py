"""A throw-away three-namespace network for deployment tests: client ── router ── upstream.

    client ns                router ns (nftables ruleset, proxy, resolver)        upstream ns
    c0 10.99.1.2/24  ─veth─  r0 10.99.1.1/24 (LAN)  r1 10.99.2.1/24 (WAN)  ─veth─  u0 10.99.2.2/24
       fd99:1::2/64             fd99:1::1/64            fd99:2::1/64                  fd99:2::2/64
                                                                     + .10/.11 social, .20 plain,
                                                                       .53 DNS (and ::10/::20)

Every address lives only inside namespaces the test creates, so nothing reaches a real network and
parallel test runs cannot collide (each lab has its own namespace names). The client knows nothing
of the proxy: its only configuration is an address and a default route via the router.

`Lab` is a context manager: on exit it stops every process it started (by pid) and deletes its
namespaces, whatever happened in the test.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
SERVERS = HERE / "netns_servers.py"

LAN_V4, LAN_V6 = "10.99.1.0/24", "fd99:1::/64"
CLIENT_V4, CLIENT_V6 = "10.99.1.2", "fd99:1::2"
ROUTER_LAN_V4, ROUTER_LAN_V6 = "10.99.1.1", "fd99:1::1"
ROUTER_WAN_V4, ROUTER_WAN_V6 = "10.99.2.1", "fd99:2::1"
UPSTREAM_V4, UPSTREAM_V6 = "10.99.2.2", "fd99:2::2"
SOCIAL_V4, SOCIAL_V6 = "10.99.2.10", "fd99:2::10"
SOCIAL_UNRESOLVED_V4 = "10.99.2.11"  # the social site too, but the district resolver never says so
PLAIN_V4, PLAIN_V6 = "10.99.2.20", "fd99:2::20"
DOH_V4 = "10.99.2.30"  # a DNS-over-HTTPS endpoint
UPSTREAM_DNS_V4 = "10.99.2.53"
UPSTREAM_ADDRESSES_V4 = (
    UPSTREAM_V4, SOCIAL_V4, SOCIAL_UNRESOLVED_V4, PLAIN_V4, DOH_V4, UPSTREAM_DNS_V4,
)  # fmt: skip
BOGUS_DNS_V4 = "10.99.2.99"  # nobody listens here: a client asking it must be redirected


def unavailable_reason() -> str | None:
    """Why namespace tests cannot run here, or None when they can."""
    if sys.platform != "linux":
        return "network namespaces are Linux-only"
    if os.geteuid() != 0:
        return "creating network namespaces needs root"
    for tool in ("ip", "ss", "nft", "curl", "dnsmasq"):
        if shutil.which(tool) is None:
            packages = "iproute2 nftables curl dnsmasq-base"
            return f"`{tool}` is not installed (apt-get install {packages})"
    probe = f"sgprobe{secrets.token_hex(3)}"
    made = subprocess.run(
        ["ip", "netns", "add", probe], capture_output=True, text=True, check=False
    )
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)
    return None


@dataclass
class Namespace:
    name: str

    def argv(self, *argv: str | Path) -> list[str]:
        return ["ip", "netns", "exec", self.name, *map(str, argv)]

    def run(
        self, *argv: str | Path, check: bool = True, timeout: float = 30, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            self.argv(*argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            input=input,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"[{self.name}] {' '.join(map(str, argv))} exited {result.returncode}:\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result


@dataclass
class Curl:
    status: int
    body: str
    stderr: str
    returncode: int


@dataclass
class Lab:
    """Three namespaces wired as client ── router ── upstream, torn down on exit."""

    workdir: Path
    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    processes: list[subprocess.Popen[str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.client = Namespace(f"sg{self.tag}c")
        self.router = Namespace(f"sg{self.tag}r")
        self.upstream = Namespace(f"sg{self.tag}u")

    # -- lifecycle ------------------------------------------------------------------------------

    def __enter__(self) -> Lab:
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _build(self) -> None:
        for ns in (self.client, self.router, self.upstream):
            _ip("netns", "add", ns.name)
            ns.run("ip", "link", "set", "lo", "up")
        # Both ends of each veth are created directly inside their namespaces: no name ever
        # exists in the root namespace, so parallel labs cannot clash.
        _ip("link", "add", "c0", "netns", self.client.name, "type", "veth",
            "peer", "name", "r0", "netns", self.router.name)  # fmt: skip
        _ip("link", "add", "r1", "netns", self.router.name, "type", "veth",
            "peer", "name", "u0", "netns", self.upstream.name)  # fmt: skip
        self._addresses(self.client, "c0", [f"{CLIENT_V4}/24"], [f"{CLIENT_V6}/64"])
        self._addresses(self.router, "r0", [f"{ROUTER_LAN_V4}/24"], [f"{ROUTER_LAN_V6}/64"])
        self._addresses(self.router, "r1", [f"{ROUTER_WAN_V4}/24"], [f"{ROUTER_WAN_V6}/64"])
        self._addresses(
            self.upstream,
            "u0",
            [f"{a}/24" for a in UPSTREAM_ADDRESSES_V4],
            [f"{a}/64" for a in (UPSTREAM_V6, SOCIAL_V6, PLAIN_V6)],
        )
        self.client.run("ip", "route", "add", "default", "via", ROUTER_LAN_V4)
        self.client.run("ip", "-6", "route", "add", "default", "via", ROUTER_LAN_V6)
        self.upstream.run("ip", "route", "add", LAN_V4, "via", ROUTER_WAN_V4)
        self.upstream.run("ip", "-6", "route", "add", LAN_V6, "via", ROUTER_WAN_V6)
        # Per-namespace sysctls, written directly (no dependency on procps' sysctl).
        for key, value in (("net/ipv4/ip_forward", 1), ("net/ipv6/conf/all/forwarding", 1),
                           ("net/ipv4/conf/all/send_redirects", 0)):  # fmt: skip
            self.router.run("sh", "-c", f"echo {value} > /proc/sys/{key}")

    @staticmethod
    def _addresses(ns: Namespace, dev: str, v4: Sequence[str], v6: Sequence[str]) -> None:
        for addr in v4:
            ns.run("ip", "addr", "add", addr, "dev", dev)
        for addr in v6:
            # nodad: usable at once instead of after duplicate address detection
            ns.run("ip", "-6", "addr", "add", addr, "dev", dev, "nodad")
        ns.run("ip", "link", "set", dev, "up")

    def close(self) -> None:
        for proc in reversed(self.processes):
            if proc.poll() is None:
                proc.terminate()
        for proc in reversed(self.processes):
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
            if proc.stdout is not None:
                proc.stdout.close()
        self.processes.clear()
        for ns in (self.client, self.router, self.upstream):
            subprocess.run(["ip", "netns", "del", ns.name], capture_output=True, check=False)

    # -- processes ------------------------------------------------------------------------------

    def start(
        self,
        ns: Namespace,
        argv: Sequence[str | Path],
        *,
        ready: str | None = None,
        log: Path | None = None,
        timeout: float = 30,
    ) -> subprocess.Popen[str]:
        """Start a process in `ns`; with `ready`, wait (bounded) until it prints that line."""
        out = open(log, "w") if log else subprocess.DEVNULL  # noqa: SIM115 - closed below
        proc = subprocess.Popen(
            ns.argv(*argv),
            stdout=subprocess.PIPE if ready else out,
            stderr=out if log else subprocess.DEVNULL,
            text=True,
        )
        if log:
            out.close()  # type: ignore[union-attr]
        self.processes.append(proc)
        if ready:
            _wait_for_line(proc, ready, timeout)
        return proc

    def start_servers(self, config: Path) -> subprocess.Popen[str]:
        """The upstream's HTTPS and UDP servers (see netns_servers.py)."""
        return self.start(
            self.upstream, [sys.executable, SERVERS, config], ready="ready",
            log=self.workdir / "servers.log",
        )  # fmt: skip

    def wait_for_http(self, ns: Namespace, url: str, timeout: float = 60) -> None:
        """Poll `url` from inside `ns` until it answers 200 (bounded)."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            r = ns.run("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "2",
                       url, check=False)  # fmt: skip
            last = r.stdout
            if last == "200":
                return
            dead = [p for p in self.processes if p.poll() is not None]
            if dead:
                raise AssertionError(f"a process exited early: {dead[0].args}")
            time.sleep(0.2)
        raise AssertionError(f"{url} in {ns.name} never answered 200 (last: {last!r})")

    def wait_for_listener(self, ns: Namespace, port: int, timeout: float = 60) -> None:
        """Wait (bounded) until something in `ns` listens on TCP `port`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ns.run("ss", "-Hltn", f"sport = :{port}", check=False).stdout.strip():
                return
            dead = [p for p in self.processes if p.poll() is not None]
            if dead:
                raise AssertionError(f"a process exited early: {dead[0].args}")
            time.sleep(0.2)
        raise AssertionError(f"nothing listens on port {port} in {ns.name}")

    # -- the client's view ----------------------------------------------------------------------

    def curl(self, url: str, *args: str, resolve: str | None = None) -> Curl:
        """curl from the client namespace; `resolve` is the address the URL's host resolves to."""
        argv = ["curl", "-sS", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}"]
        if resolve:
            host = url.split("/")[2]
            port = "443" if url.startswith("https:") else "80"
            addr = f"[{resolve}]" if ":" in resolve else resolve
            argv += ["--resolve", f"{host}:{port}:{addr}"]
        r = self.client.run(*argv, *args, url, check=False, timeout=30)
        body, _, code = r.stdout.rpartition("\n")
        return Curl(int(code) if code.isdigit() else 0, body, r.stderr, r.returncode)


def _ip(*argv: str) -> None:
    r = subprocess.run(["ip", *argv], capture_output=True, text=True, check=False, timeout=30)
    if r.returncode != 0:
        raise AssertionError(f"ip {' '.join(argv)}: {r.stderr.strip()}")


def _wait_for_line(proc: subprocess.Popen[str], wanted: str, timeout: float) -> None:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        readable, _, _ = select.select([proc.stdout], [], [], 0.2)
        if readable:
            line = proc.stdout.readline()
            if line.strip() == wanted:
                return
            if line == "":
                break
        elif proc.poll() is not None:
            break
    raise AssertionError(f"{proc.args} did not print {wanted!r} (exit code {proc.poll()})")


# ------------------------------------------------------------------------------ real names


@dataclass
class PrivateNames:
    """One namespace with only loopback, where real names (www.facebook.com) resolve to 127.0.0.1.

    `ip netns exec` binds the files of /etc/netns/NAME/ over /etc/ for what it runs, so a process
    started with `start()` reads a private /etc/hosts; the host's own is never touched. Sockets the
    test itself makes inside (`inside()`: the origins on 127.0.0.1:80/443, its clients) are created
    with the calling thread switched into the namespace and back. On exit every process started is
    stopped and the namespace and its /etc/netns directory are removed.
    """

    names: Sequence[str]
    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    processes: list[subprocess.Popen[str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.ns = Namespace(f"sg{self.tag}n")
        self.etc = Path("/etc/netns") / self.ns.name

    def __enter__(self) -> PrivateNames:
        try:
            _ip("netns", "add", self.ns.name)
            self.ns.run("ip", "link", "set", "lo", "up")
            self.etc.mkdir(parents=True)
            hosts = ["127.0.0.1 localhost", "::1 localhost"]
            hosts += [f"127.0.0.1 {name}" for name in self.names]
            (self.etc / "hosts").write_text("\n".join(hosts) + "\n")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for proc in reversed(self.processes):
            if proc.poll() is None:
                proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self.processes.clear()
        subprocess.run(["ip", "netns", "del", self.ns.name], capture_output=True, check=False)
        shutil.rmtree(self.etc, ignore_errors=True)

    def start(self, argv: Sequence[str | Path], *, log: Path) -> subprocess.Popen[str]:
        """Start a process inside, its output (both streams) in `log`."""
        with open(log, "w") as out:
            proc = subprocess.Popen(
                self.ns.argv(*argv), stdout=out, stderr=subprocess.STDOUT, text=True,
                env={**os.environ, "NO_COLOR": "1", "PYTHONUNBUFFERED": "1"},
            )  # fmt: skip
        self.processes.append(proc)
        return proc

    @contextlib.contextmanager
    def inside(self) -> Iterator[None]:
        """Sockets made in this block belong to the namespace (this thread only, restored after)."""
        with open("/proc/thread-self/ns/net") as home, open(f"/run/netns/{self.ns.name}") as ns:
            os.setns(ns.fileno(), os.CLONE_NEWNET)
            try:
                yield
            finally:
                os.setns(home.fileno(), os.CLONE_NEWNET)
