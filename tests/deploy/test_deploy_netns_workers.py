"""`socialguard run --workers N` behind `socialguard deploy nftables --workers N`, in namespaces.

Clients are spread over the workers by source-address hash and stay with one; each worker logs to
its own chain (node `<host>-w<i>`) and answers on its own admin port.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
from netns import SOCIAL_V4, Lab, unavailable_reason  # type: ignore[import-not-found]
from test_deploy_netns import (  # type: ignore[import-not-found]
    ADMIN,
    SOCIAL_HOST,
    Deployment,
    deploy,
)

pytestmark = [pytest.mark.netns, pytest.mark.e2e]
REASON = unavailable_reason()
if REASON:
    pytestmark.append(pytest.mark.skip(reason=REASON))

WORKERS = 2
# 16 client addresses: the chance that a hash puts all of them on one of two workers is 2**-15.
CLIENTS = [f"10.99.1.{i}" for i in range(100, 116)]


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    workdir = tmp_path_factory.mktemp("workers")
    with Lab(workdir) as lab:
        for addr in CLIENTS:
            lab.client.run("ip", "addr", "add", f"{addr}/24", "dev", "c0")
        yield deploy(lab, workdir, workers=WORKERS).use("full")


def test_each_client_stays_with_one_worker_and_both_are_used(workers: Deployment) -> None:
    for round_ in range(2):
        for addr in CLIENTS:
            r = workers.lab.curl(
                f"https://{SOCIAL_HOST}/w{round_}", "-k", "--interface", addr, resolve=SOCIAL_V4
            )
            assert r.status == 403, r.stderr
    nodes_by_client: dict[str, set[str]] = defaultdict(set)
    for record in workers.decision_records():
        if record.get("host") == SOCIAL_HOST and record.get("stage") == "request":
            nodes_by_client[json.dumps(record.get("client"))].add(record["node"])
    assert len(nodes_by_client) == len(CLIENTS), nodes_by_client.keys()
    assert all(len(nodes) == 1 for nodes in nodes_by_client.values()), nodes_by_client
    used = set().union(*nodes_by_client.values())
    assert len(used) == WORKERS
    assert {n.rsplit("-", 1)[1] for n in used} == {f"w{i}" for i in range(WORKERS)}


def test_each_worker_has_its_own_admin_endpoint(workers: Deployment) -> None:
    host, port = ADMIN.rsplit(":", 1)
    for i in range(WORKERS):
        body = workers.lab.router.run("curl", "-sS", f"http://{host}:{int(port) + i}/healthz")
        assert json.loads(body.stdout)["status"] == "ok"


def test_each_worker_writes_its_own_log_chain(workers: Deployment) -> None:
    workers.lab.curl(f"https://{SOCIAL_HOST}/chain", "-k", resolve=SOCIAL_V4)
    files_by_node: dict[str, set[Path]] = defaultdict(set)
    for path in workers.log_dir.rglob("*"):
        if path.is_file():
            for line in path.read_text(errors="replace").splitlines():
                if line.startswith("{"):
                    files_by_node[json.loads(line)["node"]].add(path)
    for node, files in files_by_node.items():
        others = set().union(*(f for n, f in files_by_node.items() if n != node))
        assert not files & others, f"{node} shares a log file with another worker"
