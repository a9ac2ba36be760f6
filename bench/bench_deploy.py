"""What steering saves: new HTTPS connections/s to a non-social site, direct vs through the proxy.

Builds the namespace lab of tests/deploy (client ── router ── upstream, all addresses private to
namespaces created here), runs the real proxy in the router, and from the client opens N fresh TLS
connections (handshake + one GET each, C at a time) to the non-social upstream:

- baseline: steered mode — the connection never touches the proxy (what a steered deployment does
  with everything the policy does not concern);
- measured: full mode — the same connection redirected to the proxy, which decides on the SNI and
  passes it through undecrypted.

Needs root (network namespaces), nft, curl and dnsmasq. Bounded: N connections per run.
Usage: python bench/bench_deploy.py [N] [C]
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "deploy"))

import test_deploy_netns as kit  # noqa: E402
from netns import PLAIN_V4, Lab, unavailable_reason  # noqa: E402

CLIENT = r"""
import asyncio, json, ssl, sys, time
addr, host, cafile, n, c = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
ctx = ssl.create_default_context(cafile=cafile)
ctx.set_alpn_protocols(["http/1.1"])
async def one():
    r, w = await asyncio.open_connection(addr, 443, ssl=ctx, server_hostname=host)
    w.write(f"GET /bench HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    await w.drain()
    data = await r.read()
    w.close()
    return data.startswith(b"HTTP/1.1 200")
async def main():
    sem = asyncio.Semaphore(c)
    async def guarded():
        async with sem:
            return await one()
    t = time.perf_counter()
    ok = await asyncio.gather(*(guarded() for _ in range(n)))
    print(json.dumps({"seconds": time.perf_counter() - t, "ok": sum(ok), "n": n}))
asyncio.run(main())
"""


def run_client(dep: kit.Deployment, n: int, c: int) -> dict[str, float]:
    r = dep.lab.client.run(
        sys.executable, "-c", CLIENT, PLAIN_V4, kit.PLAIN_HOST, str(dep.pki.ca), str(n), str(c),
        timeout=600,
    )  # fmt: skip
    out = json.loads(r.stdout)
    if out["ok"] != n:
        raise SystemExit(f"only {out['ok']} of {n} connections succeeded")
    return out


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 400
    c = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    reason = unavailable_reason()
    if reason:
        print(f"skipped: {reason}")
        return 0
    with tempfile.TemporaryDirectory(prefix="sg-bench-deploy-") as tmp, Lab(Path(tmp)) as lab:
        dep = kit.deploy(lab, Path(tmp))
        results = {}
        for mode in ("steered", "full"):
            dep.use(mode)
            run_client(dep, min(n, 20), c)  # warm-up
            best = None
            for _ in range(3):
                out = run_client(dep, n, c)
                rate = n / out["seconds"]
                best = rate if best is None else max(best, rate)
            results[mode] = best
            time.sleep(0.5)
    direct, proxied = results["steered"], results["full"]
    print(f"new HTTPS connections/s to a non-social site (N={n}, {c} at a time, best of 3)")
    print(f"  {'baseline: steered (direct)':<36} {direct:8.0f} conn/s")
    print(f"  {'measured: full (proxy, passthrough)':<36} {proxied:8.0f} conn/s")
    print(f"  ratio full/steered: {proxied / direct:.2f}x  (steered saves the proxy that work)")
    print("  machine: 2 cores shared with other work; figures are noisy")
    return 0


if __name__ == "__main__":
    sys.exit(main())
