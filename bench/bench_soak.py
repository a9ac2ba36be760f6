"""Soak: a real `socialguard run` under mixed traffic for --minutes, with grants, revokes and rules
edits, sampling its RSS and open file descriptors.

The figure (issue 19): after warm-up, RSS grows by at most 1 MB per 10 minutes (least-squares
slope), the FDs come back to their baseline once traffic stops, and no request fails. Printed: the
series (one line per sample), the slope beside its 1 MB budget, FDs before/after, requests by
answer, errors, and the proxy's own reload/rejection counts from its log.

Traffic, on loopback only: an allowed site (a bare-IP origin here), facebook.com (always blocked,
answered by the proxy without an upstream), and a "social" address (127.0.0.2, same origin)
that grants open and revokes close. Rules edits alternate between adding a rule (taken by itself)
and removing it again (a loss: published with `socialguard rules apply --yes`).

    .venv/bin/python bench/bench_soak.py               # 10 minutes
    .venv/bin/python bench/bench_soak.py --minutes 1   # a quick check that it works
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RSS_BUDGET_MB_PER_10_MIN = 1.0

RULES = """\
gateway_services: ["127.0.0.0/8"]  # the origins are loopback addresses
district:
  name: Soak District
  timezone: America/Denver
  policy_url: https://www.example.k12.test/board/policies/social-networking
groups:
  staff:
    networks: [127.0.0.0/8]
categories:
  social:
    description: Social networking sites (here, a loopback address that grants open)
    networks: [127.0.0.2/32]
rules:
{extra}  - id: facebook-never
    description: Facebook is off limits on this network, grants or not
    who: [staff]
    what:
      domains: [facebook.com]
    action: block
  - id: social-always
    description: Social networking is off limits on this network
    who: [staff]
    what:
      categories: [social]
    action: block
    bypass: [grant]
default: allow
tests:
  - {{url: "http://www.facebook.com/", client: 127.0.0.1, at: "2026-12-01T10:00", expect: block}}
  - {{url: "http://127.0.0.2/", client: 127.0.0.1, at: "2026-12-01T10:00", expect: block}}
"""
EXTRA_RULE = """\
  - id: soak-extra-{n}
    description: Edit number {n} of the soak
    who: [staff]
    what:
      domains: [tiktok.com]
    action: block
"""


class _Ok(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Origin(ThreadingHTTPServer):
    daemon_threads = True


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _slope_per_10_min(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MB), in MB per 10 minutes."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mx = sum(t for t, _ in points) / n
    my = sum(v for _, v in points) / n
    var = sum((t - mx) ** 2 for t, _ in points)
    if var == 0:
        return 0.0
    cov = sum((t - mx) * (v - my) for t, v in points)
    return cov / var * 600


class Traffic:
    """Client threads through the proxy; counts answers and errors."""

    def __init__(self, proxy_port: int, origin_port: int) -> None:
        self.proxy_port = proxy_port
        self.targets = [
            f"http://127.0.0.1:{origin_port}/ok",
            "http://www.facebook.com/",
            f"http://127.0.0.2:{origin_port}/social",
        ]
        self.answers: Counter[str] = Counter()
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()

    def run(self, worker: int) -> None:
        i = 0
        conn: http.client.HTTPConnection | None = None
        while not self.stop.is_set():  # bounded by the soak's duration
            url = self.targets[i % len(self.targets)]
            i += 1
            try:
                if conn is None or i % 20 == 0:  # keep-alive, with fresh connections now and then
                    if conn is not None:
                        conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", self.proxy_port, timeout=15)
                conn.request("GET", url)
                resp = conn.getresponse()
                resp.read()
                key = f"{url.split('/')[2]} {resp.status}"
                if resp.status not in (200, 403):
                    raise RuntimeError(f"unexpected status {resp.status} for {url}")
                if resp.getheader("connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except Exception as e:  # counted: the figure is "0 errors"
                with self.lock:
                    self.errors.append(f"worker {worker}: {url}: {type(e).__name__}: {e}")
                if conn is not None:
                    conn.close()
                conn = None
                continue
            with self.lock:
                self.answers[key] += 1
            time.sleep(0.01)  # a steady load, not a saturating one: this is about leaks
        if conn is not None:
            conn.close()


def _wait_listening(err: Path, proc: subprocess.Popen[bytes]) -> int:
    for _ in range(1200):  # bounded: two minutes
        m = re.search(r"listening on 127\.0\.0\.1:(\d+)", err.read_text(errors="replace"))
        if m:
            return int(m.group(1))
        if proc.poll() is not None:
            raise SystemExit(f"socialguard run exited: {err.read_text()}")
        time.sleep(0.1)
    raise SystemExit("socialguard run did not start")


def main() -> int:  # noqa: PLR0915 - one straight script: set up, soak, report
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0, help="soak duration (default 10)")
    ap.add_argument("--sample-seconds", type=float, default=10.0, help="sampling period")
    ap.add_argument("--threads", type=int, default=2, help="client threads")
    ap.add_argument(
        "--no-grants",
        action="store_true",
        help="no grants or revokes (to tell the overrides' share of the RSS slope)",
    )
    args = ap.parse_args()
    duration = args.minutes * 60
    warmup = min(60.0, duration * 0.2)

    from socialguard.overrides import Actor, open_store

    work = Path(tempfile.mkdtemp(prefix="socialguard-soak-"))
    rules = work / "rules.yaml"
    rules.write_text(RULES.format(extra=""))
    state = work / "state"
    origin = _Origin(("0.0.0.0", 0), _Ok)  # reached as 127.0.0.1 and 127.0.0.2 (loopback)
    threading.Thread(target=origin.serve_forever, daemon=True).start()
    err = work / "run.log"
    env = {**os.environ, "NO_COLOR": "1", "PYTHONUNBUFFERED": "1"}
    with err.open("wb") as errf:
        proc = subprocess.Popen(
            [sys.executable, "-m", "socialguard", "run", "--rules", str(rules),
             "--certs", str(work / "certs"), "--state", str(state),
             "--listen", "127.0.0.1:0", "--node", "soak"],
            stdout=subprocess.DEVNULL, stderr=errf, env=env, cwd=REPO,
        )  # fmt: skip
    traffic: Traffic | None = None
    try:
        port = _wait_listening(err, proc)
        time.sleep(2)
        fds_before = _fds(proc.pid)
        traffic = Traffic(port, origin.server_address[1])
        clients = [
            threading.Thread(target=traffic.run, args=(i,), daemon=True)
            for i in range(args.threads)
        ]
        for c in clients:
            c.start()
        store = open_store(state / "socialguard.db")
        admin = Actor(by="soak", source="bench")
        grant_id: str | None = None
        grants = revokes = edits = applies = 0
        series: list[tuple[float, float, int, int, int]] = []
        start = time.monotonic()
        next_sample = next_grant = 0.0
        next_edit = 15.0
        print(f"soak: {args.minutes:g} min, sample every {args.sample_seconds:g} s, "
              f"warm-up {warmup:.0f} s; work dir {work}", flush=True)  # fmt: skip
        print(f"{'t_s':>6} {'rss_mb':>8} {'fds':>5} {'requests':>9} {'errors':>7}", flush=True)
        while (elapsed := time.monotonic() - start) < duration:  # bounded by --minutes
            if proc.poll() is not None:
                raise SystemExit(f"socialguard run died: {err.read_text()[-2000:]}")
            if elapsed >= next_sample:
                requests = sum(traffic.answers.values())
                row = (elapsed, _rss_mb(proc.pid), _fds(proc.pid), requests, len(traffic.errors))
                series.append(row)
                print(
                    f"{row[0]:6.0f} {row[1]:8.1f} {row[2]:5d} {row[3]:9d} {row[4]:7d}", flush=True
                )
                next_sample += args.sample_seconds
            if elapsed >= next_grant and not args.no_grants:  # a grant 3 s out of every 6
                if grant_id is None:
                    now = datetime.now(UTC)
                    grant_id = store.add_grant(
                        "ip:127.0.0.1", ("category:social",), now, now + timedelta(hours=1),
                        "soak", admin,
                    ).id  # fmt: skip
                    grants += 1
                else:
                    store.revoke_grant(grant_id, "soak", admin)
                    grant_id = None
                    revokes += 1
                next_grant += 3.0
            if elapsed >= next_edit:
                edits += 1
                if edits % 2:
                    rules.write_text(RULES.format(extra=EXTRA_RULE.format(n=edits)))
                else:  # removing the rule is a loss: published explicitly
                    rules.write_text(RULES.format(extra=""))
                    time.sleep(1.5)
                    res = subprocess.run(
                        [sys.executable, "-m", "socialguard", "rules", "apply", str(rules),
                         "--state", str(state), "--yes", "--by", "soak"],
                        capture_output=True, text=True, timeout=120, check=False, env=env,
                    )  # fmt: skip
                    if res.returncode != 0:
                        traffic.errors.append(f"rules apply: {res.stderr.strip()}")
                    applies += 1
                next_edit += 30.0
            time.sleep(0.2)
        traffic.stop.set()
        for c in clients:
            c.join(timeout=30)
        if grant_id is not None:
            store.revoke_grant(grant_id, "soak over", admin)
        store.close()
        time.sleep(3)  # idle: connections closed, nothing in flight
        fds_after = _fds(proc.pid)
        rss_end = _rss_mb(proc.pid)
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=60)
    finally:
        if traffic is not None:
            traffic.stop.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        origin.shutdown()
        origin.server_close()

    logs: Counter[str] = Counter()
    for line in err.read_text(errors="replace").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            logs[str(event.get("event"))] += 1
            if event.get("level") in ("error", "critical") and event.get("event") != (
                "rules_rejected"
            ):
                traffic.errors.append(f"proxy log: {line[:300]}")
    verify = subprocess.run(
        [sys.executable, "-m", "socialguard", "audit", "verify", "--state", str(state),
         "--key", str(state / "audit-signing.pub")],
        capture_output=True, text=True, timeout=300, check=False, env=env,
    )  # fmt: skip
    if verify.returncode != 0:
        traffic.errors.append(f"audit verify: {verify.stdout.strip()[-500:]}")
    if rc != 0:
        traffic.errors.append(f"socialguard run exited {rc}")

    after_warmup = [(t, rss) for t, rss, *_ in series if t >= warmup]
    slope = _slope_per_10_min(after_warmup)
    requests = sum(traffic.answers.values())
    print()
    print(f"requests: {requests} ({requests / duration:.0f}/s); by answer: {dict(traffic.answers)}")
    print(f"grants {grants}, revokes {revokes}, rules edits {edits} ({applies} via rules apply); "
          f"proxy log: rules_reloaded {logs['rules_reloaded']}, rules_rejected "
          f"{logs['rules_rejected']}")  # fmt: skip
    print(f"RSS: {series[0][1]:.1f} MB at start, {rss_end:.1f} MB at end; slope after warm-up "
          f"{slope:+.2f} MB/10 min vs budget {RSS_BUDGET_MB_PER_10_MIN:.1f} "
          f"(ratio {abs(slope) / RSS_BUDGET_MB_PER_10_MIN:.2f})")  # fmt: skip
    print(f"FDs: {fds_before} before traffic, {fds_after} after (baseline "
          f"{'held' if fds_after <= fds_before else 'NOT reached'})")  # fmt: skip
    print(f"errors: {len(traffic.errors)}")
    for e in traffic.errors[:20]:
        print(f"  {e}")
    ok = (
        not traffic.errors
        and slope <= RSS_BUDGET_MB_PER_10_MIN
        and fds_after <= fds_before
        and logs["rules_reloaded"] >= 1
    )
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
