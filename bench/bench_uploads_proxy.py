"""A 10 MB upload through the proxy with upload inspection, beside the same proxy without it.

Every variant is the real socialguard proxy (mitmproxy + addon, decision log on), each in its own
process, with the same rules except the upload part. The baseline has no upload rule, so the body
is streamed through untouched. The others have a `what: {uploads: true}` rule naming the
destination, so the body is held, inspected and then forwarded: without markers (size and files
only), with the markers shipped in rules/policy.yaml, and with two markers that start with literal
text. The upload is a 10 MiB text body with no marker in it (hex digits), so every variant forwards
it and the upstream answers: what differs is only the inspection. (A file upload to such a
destination is blocked, not forwarded, so it cannot be timed against forwarding.)
Target: inspection adds <= 10 % to the upload's time.

Every role runs in its own process (upstream, each proxy, the client), each round runs every case
in a rotated order, and each figure is the median over the rounds, in wall time and in proxy CPU
time (summed over the proxy's threads from /proc/PID/task/*/schedstat, in nanoseconds; the wall
clock of a shared 2-core machine mostly measures others' work), its ratio to the baseline's
median, and the middle half of the per-round ratios. `--prose` adds a mixed-case text body with
digits, in which the markers' prefilter finds every byte it looks for, so every chunk is searched
in full. Last, the scan's own cost free of that noise: each proxy adds up the thread CPU time of
its `inspect_body` calls, and the held variants with and without markers are compared.
Bounded: a fixed number of rounds, loopback only. Usage:
`python bench/bench_uploads_proxy.py [--rounds 30] [--mib 10] [--prose]`.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchlib import cpu_seconds, start

EVENING = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)  # 20:00 America/Denver: social is allowed
HOST = "www.facebook.com"

BASE_RULES = """\
district: {name: Bench District, timezone: America/Denver}
schedules:
  school-hours: {weekly: {mon-fri: ["07:30-16:00"]}}
groups:
  staff: {networks: [127.0.0.0/8]}
categories:
  social: {domains: [facebook.com]}
uploads:
  max_body: 64MB
{markers}rules:
"""
SHIPPED_MARKERS = """\
  markers:  # as shipped in rules/policy.yaml
    - {name: confidential, pattern: "CONFIDENTIAL", ignore_case: true}
    - {name: student-id, pattern: "\\\\bS\\\\d{7}\\\\b"}
"""
LITERAL_MARKERS = """\
  markers:  # two like them that start with literal text (Python's re then skips ahead fast)
    - {name: confidential, pattern: "CONFIDENTIAL"}
    - {name: student-id, pattern: "S\\\\d{7}\\\\b"}
"""
UPLOAD_RULE = """\
  - id: staff-social-uploads
    description: Staff shall not post district material on social networking sites
    who: [staff]
    what: {categories: [social], uploads: true}
    action: block
"""
HOURS_RULE = """\
  - id: staff-social-school-hours
    description: Social networking during school hours
    who: [staff]
    what: {categories: [social]}
    when: school-hours
    action: block
default: allow
"""

VARIANTS = {
    # name: (rules, what the row measures)
    "baseline": (BASE_RULES.replace("{markers}", "") + HOURS_RULE, "no upload rule: body streamed"),
    "held": (
        BASE_RULES.replace("{markers}", "") + UPLOAD_RULE + HOURS_RULE,
        "upload rule, no markers: body held, size and files checked",
    ),
    "markers": (
        BASE_RULES.replace("{markers}", SHIPPED_MARKERS) + UPLOAD_RULE + HOURS_RULE,
        "upload rule + the shipped markers: body held and scanned",
    ),
    "literal": (
        BASE_RULES.replace("{markers}", LITERAL_MARKERS) + UPLOAD_RULE + HOURS_RULE,
        "upload rule + two literal-prefix markers",
    ),
}


# ------------------------------------------------------------------------------ upstream


class _Sink(asyncio.Protocol):
    """HTTP/1.1 upstream that reads each request's body (Content-Length) and answers 200."""

    RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"

    def connection_made(self, transport: Any) -> None:
        self.t = transport
        self.buf = b""
        self.left = -1  # body bytes still to read; -1: reading headers

    def data_received(self, data: bytes) -> None:
        if self.left > 0:
            take = min(self.left, len(data))
            self.left -= take
            data = data[take:]
            if self.left == 0:
                self.t.write(self.RESPONSE)
                self.left = -1
        if not data:
            return
        self.buf += data
        while self.left < 0 and b"\r\n\r\n" in self.buf:
            head, self.buf = self.buf.split(b"\r\n\r\n", 1)
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            take = min(length, len(self.buf))
            self.buf = self.buf[take:]
            self.left = length - take
            if self.left == 0:
                self.t.write(self.RESPONSE)
                self.left = -1


def _upstream(ready: Any) -> None:
    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(_Sink, "127.0.0.1", 0)
        ready.send(server.sockets[0].getsockname()[1])
        await asyncio.Event().wait()

    asyncio.run(main())


# ------------------------------------------------------------------------------ proxies


class Steer:
    """Plain HTTP goes to the local upstream, after the decision (the Host header is kept)."""

    def __init__(self, port: int) -> None:
        self.port = port

    def requestheaders(self, flow: Any) -> None:
        if flow.response is None and flow.request.scheme == "http":
            host = flow.request.host_header
            flow.request.host, flow.request.port = "127.0.0.1", self.port
            flow.request.host_header = host


def _proxy(rules: str, work: str, upstream_port: int, inspected: Any, ready: Any) -> None:
    import warnings

    warnings.simplefilter("ignore")
    import socialguard.proxy.uploads as glue
    from socialguard.proxy import ManualClock, ProxyConfig, serve

    inspect = glue.inspect_body

    def timed(*args: Any, **kwargs: Any) -> Any:
        """The held body's inspection, its thread CPU time added up in `inspected` (seconds):
        the scan's own cost, free of the noise in the whole process's time."""
        start = time.thread_time()
        try:
            return inspect(*args, **kwargs)
        finally:
            with inspected.get_lock():
                inspected.value += time.thread_time() - start

    glue.inspect_body = timed  # decide_held looks it up at each call

    base = Path(work)
    config = ProxyConfig(
        rules=Path(rules), certs=base.parent / "certs", state=base / "state",
        log_dir=base / "log", listen_port=0, node="bench",
    )  # fmt: skip
    asyncio.run(
        serve(
            config,
            clock=ManualClock(EVENING),
            extra_addons=[Steer(upstream_port)],
            on_ready=lambda addrs: ready.send(addrs[0][1]),
            with_termlog=False,
        )
    )


# ------------------------------------------------------------------------------ client


BOUNDARY = "----socialguardbenchproxy7"


PROSE = (
    b"Dear families, the Spring Concert moved to Room 214 on May 3rd at 6:30 PM. Students "
    b"should arrive by 6:00; Seniors collect caps and gowns Monday-Friday (Office 12B). "
    b"Questions? Call Ms. Sanchez at 555-0142 or see https://schools.example/news?id=4412. "
)


def _body(kind: str, mib: int) -> tuple[bytes, str]:
    """`text`: a form body of hex digits (no marker can appear); `prose`: mixed-case text with
    digits and every letter of the markers, none of them whole; `file`: a browser's multipart
    upload of one binary file."""
    if kind == "text":
        return os.urandom(mib * 1024 * 1024 // 2).hex().encode(), (
            "application/x-www-form-urlencoded"
        )
    if kind == "prose":
        return (PROSE * (mib * 1024 * 1024 // len(PROSE) + 1))[: mib * 1024 * 1024], "text/plain"
    head = (
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="photo"; filename="team.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    body = head + os.urandom(mib * 1024 * 1024) + f"\r\n--{BOUNDARY}--\r\n".encode()
    return body, f"multipart/form-data; boundary={BOUNDARY}"


async def _upload(port: int, body: bytes, ctype: str) -> tuple[float, bytes]:
    """One upload on a fresh connection: seconds from first byte sent to full response."""
    head = (
        f"POST http://{HOST}/status HTTP/1.1\r\nHost: {HOST}\r\n"
        f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.perf_counter()
    writer.write(head)
    view = memoryview(body)
    for i in range(0, len(body), 256 * 1024):
        writer.write(view[i : i + 256 * 1024])
        await writer.drain()
    answer = await reader.readuntil(b"\r\n\r\n")
    length = int(answer.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    await reader.readexactly(length)
    elapsed = time.perf_counter() - started
    writer.close()
    return elapsed, answer.split(b"\r\n", 1)[0]


def _client(port: int, kind: str, mib: int, out: Any) -> None:
    body, ctype = _body(kind, mib)
    out.send(asyncio.run(_upload(port, body, ctype)))


def _one(  # noqa: PLR0917 (a proxy's three handles, then the case: called with *proxy)
    port: int, pid: int, inspected: Any, kind: str, mib: int, expect: bytes
) -> tuple[float, float, float]:
    """(wall seconds, proxy CPU seconds, seconds the proxy spent in inspect_body) of one upload."""
    before, inspected_before = cpu_seconds(pid), inspected.value
    proc, (elapsed, status) = start(_client, port, kind, mib, timeout=120)
    proc.join(10)
    if status.split(b" ")[1:2] != [expect]:
        raise SystemExit(f"{kind} upload through port {port} answered {status!r}, not {expect!r}")
    return elapsed, cpu_seconds(pid) - before, inspected.value - inspected_before


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--mib", type=int, default=10)
    ap.add_argument(
        "--prose",
        action="store_true",
        help="also time a body of prose, where no marker's prefilter can skip a chunk",
    )
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sg-bench-uploads-"))
    procs: list[mp.Process] = []
    try:
        from socialguard.proxy import ensure_ca

        ensure_ca(work / "certs")
        up, up_port = start(_upstream)
        procs.append(up)
        proxies: dict[str, tuple[int, int, Any]] = {}
        for name, (rules, _) in VARIANTS.items():
            (work / name).mkdir()
            path = work / name / "rules.yaml"
            path.write_text(rules)
            inspected = mp.Value("d", 0.0)
            p, port = start(_proxy, str(path), str(work / name), up_port, inspected, timeout=180)
            procs.append(p)
            proxies[name] = (port, p.pid, inspected)
        cases = [("text", name, b"200") for name in VARIANTS]
        if args.prose:
            cases += [("prose", name, b"200") for name in ("baseline", "held", "markers")]
        cases += [("file", "baseline", b"200"), ("file", "markers", b"403")]
        for proxy in proxies.values():  # warm-up: imports, first decision, log files
            _one(*proxy, "text", 1, b"200")
        wall: dict[tuple[str, str], list[float]] = {c[:2]: [] for c in cases}
        cpu: dict[tuple[str, str], list[float]] = {c[:2]: [] for c in cases}
        inspecting: dict[tuple[str, str], list[float]] = {c[:2]: [] for c in cases}
        for r in range(args.rounds):
            for kind, name, expect in cases[r % len(cases) :] + cases[: r % len(cases)]:
                w, c, i = _one(*proxies[name], kind, args.mib, expect)
                wall[kind, name].append(w)
                cpu[kind, name].append(c)
                inspecting[kind, name].append(i)
        _report(wall, cpu, args)
        _report_inspection(inspecting, cpu)
    finally:
        for p in procs:
            p.kill()
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _report_inspection(
    inspecting: dict[tuple[str, str], list[float]], cpu: dict[tuple[str, str], list[float]]
) -> None:
    """The scan's own cost: inspect_body's thread CPU time inside the proxy, with markers minus
    without, as a share of the baseline proxy's CPU time."""
    print("inside the proxy: inspect_body's CPU time per upload (median), held body")
    for kind in ("text", "prose"):
        if (kind, "markers") not in inspecting:
            continue
        held = statistics.median(inspecting[kind, "held"]) * 1000
        marked = statistics.median(inspecting[kind, "markers"]) * 1000
        base = statistics.median(cpu[kind, "baseline"]) * 1000
        share = (marked - held) / base
        print(
            f"  {kind:6} no markers {held:6.2f} ms, shipped markers {marked:6.2f} ms: the marker "
            f"scan adds {marked - held:6.2f} ms, {share:6.1%} of the baseline's CPU"
        )


def _quartiles(values: list[float], base: list[float]) -> str:
    """Middle half (25th-75th percentile) of the per-round ratios (each round ran every case,
    in rotated order); the full range is mostly other processes' noise on this machine."""
    q = statistics.quantiles([v / b for v, b in zip(values, base, strict=True)], n=4)
    return f"{q[0]:.2f}-{q[2]:.2f}"


def _report(
    wall: dict[tuple[str, str], list[float]], cpu: dict[tuple[str, str], list[float]], args: Any
) -> None:
    print(
        f"{args.mib} MiB upload through the proxy, {args.rounds} rounds: median wall time and "
        "proxy CPU time, their ratio to the baseline's median, and the middle half of the "
        "per-round ratios (noisy: shared 2-core machine, other work running)"
    )
    columns = (
        f"{'wall ms':>8} {'ratio':>5} {'p25-p75':>9} {'CPU ms':>7} {'ratio':>5} {'p25-p75':>9}"
    )
    print(f"{'case':66} {columns}")
    for kind, title in (
        ("text", "text body of hex digits, no marker in it: forwarded by every variant"),
        ("prose", "text body of prose (mixed case, digits), no marker: forwarded"),
        (
            "file",
            "multipart file: forwarded by the baseline, held and refused (403) with upload rule",
        ),
    ):
        if (kind, "baseline") not in wall:
            continue
        print(title)
        w0, c0 = wall[kind, "baseline"], cpu[kind, "baseline"]
        for name, (_, what) in VARIANTS.items():
            if (kind, name) not in wall:
                continue
            w, c = wall[kind, name], cpu[kind, name]
            wm, cm = statistics.median(w), statistics.median(c)
            print(
                f"  {name + ': ' + what:64} {wm * 1000:8.1f} {wm / statistics.median(w0):5.2f}"
                f" {_quartiles(w, w0):>9} {cm * 1000:7.1f} {cm / statistics.median(c0):5.2f}"
                f" {_quartiles(c, c0):>9}"
            )
    print("target: inspection adds <= 10 % (ratio <= 1.10) to the baseline's time")


if __name__ == "__main__":
    sys.exit(main())
