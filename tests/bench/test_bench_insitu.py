"""`bench/insitu.py`: the in-place timers of `compare_revisions.py --in-situ` time what they name.

The timers patch the addon's class for a whole process, so they run in a child process of their
own. A renamed hook or record method would silently drop its line from the report; this fails.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

DRIVER = """
import sys, time, warnings
from datetime import UTC, datetime
from pathlib import Path
sys.path.insert(0, {bench!r})
warnings.simplefilter("ignore")
import insitu
work = Path({work!r})
insitu.install(work / insitu.FILE)
from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.test import taddons, tflow, tutils
from socialguard.proxy import ManualClock, SocialGuard
addon = SocialGuard(ManualClock(datetime(2026, 12, 1, 17, 0, tzinfo=UTC)))  # school hours
with taddons.context(Proxyserver(), addon) as tctx:
    tctx.configure(addon, connection_strategy="lazy", socialguard_rules={rules!r},
                   socialguard_state=str(work / "state"), socialguard_log_dir=str(work / "log"),
                   socialguard_node="t")
    client = tflow.tflow().client_conn
    client.sni = None
    for _ in range({n}):
        req = tutils.treq(host="www.example.org", port=80, scheme=b"http", path=b"/",
                          headers=[(b"host", b"www.example.org"), (b"accept", b"*/*")])
        flow = tflow.tflow(req=req)
        flow.client_conn = client
        addon.requestheaders(flow)
        addon.request(flow)
    time.sleep(1.5)  # the timers' sums reach their file
    addon.done()
print(insitu.FILE)
"""


def test_in_place_timers_count_every_call_and_nest(tmp_path: Path, repo_root: Path) -> None:
    bench = str(repo_root / "bench")
    sys.path.insert(0, bench)
    try:
        import insitu
    finally:
        sys.path.remove(bench)
    n = 40
    driver = DRIVER.format(
        bench=bench, work=str(tmp_path), rules=str(repo_root / "rules" / "demo.yaml"), n=n
    )
    done = subprocess.run(
        [sys.executable, "-c", driver], capture_output=True, text=True, timeout=90, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    raw = json.loads((tmp_path / insitu.FILE).read_text())
    times = insitu.read([tmp_path / insitu.FILE])
    named = [what for what, *_ in insitu.TIMED] + [insitu.WRITE]
    assert sorted(raw) == sorted(named)  # every timed thing still exists under its name
    for what in named[:3]:  # each allowed request: both hooks and one plain record
        assert times[what][0] == n, what
    # the log's own records (file_open) are written too, beside the n decisions
    assert times[insitu.WRITE][0] >= times["  sealed and written"][0] >= n
    hook, record, sealed = (times[w][1] for w in named[:1] + named[2:4])
    assert hook > record > sealed > 0  # each nested inside the one above
