"""The Dockerfile and the systemd unit: what can be checked without a Docker engine or systemd as
init. `systemd-analyze verify` and its offline security review run where systemd is installed;
the Dockerfile is parsed, its sources and options checked, and its HEALTHCHECK command is run
against a real admin endpoint."""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from socialguard.deploy.metrics import AdminServer, Metrics
from socialguard.proxy.options import parse_admin, parse_hostport

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
UNIT = REPO / "packaging" / "systemd" / "socialguard.service"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = pending + line
        pending = ""
        word, _, rest = full.partition(" ")
        out.append((word.upper(), rest.strip()))
    assert not pending, "dangling line continuation"
    return out


def final_stage(ins: list[tuple[str, str]]) -> list[tuple[str, str]]:
    starts = [i for i, (word, _) in enumerate(ins) if word == "FROM"]
    return ins[starts[-1] :]


def dockerignored(name: str) -> bool:
    patterns = [
        ln.strip()
        for ln in (REPO / ".dockerignore").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    return any(fnmatch.fnmatch(name.rstrip("/"), p) for p in patterns)


def exec_form(args: str) -> list[str]:
    import json

    return json.loads(args)


def test_dockerfile_is_multi_stage() -> None:
    stages = [a for w, a in instructions(DOCKERFILE) if w == "FROM"]
    assert len(stages) >= 2
    assert all("slim" in s or s.startswith("${PYTHON_IMAGE}") for s in stages)
    assert "ARG PYTHON_IMAGE=python:3.12-slim" in DOCKERFILE.read_text()


def test_dockerfile_runs_as_a_non_root_user() -> None:
    users = [a for w, a in final_stage(instructions(DOCKERFILE)) if w == "USER"]
    assert users, "the runtime stage must set USER"
    assert users[-1].split(":")[0] not in ("root", "0")


def test_dockerfile_declares_volumes_for_rules_certs_state_and_logs() -> None:
    ins = final_stage(instructions(DOCKERFILE))
    (volumes,) = [exec_form(a) for w, a in ins if w == "VOLUME"]
    env = " ".join(a for w, a in ins if w == "ENV")
    settings = dict(re.findall(r"(SOCIALGUARD_\w+)=(\S+)", env))
    assert set(volumes) == {
        str(Path(settings["SOCIALGUARD_RULES"]).parent),
        settings["SOCIALGUARD_CERTS"],
        settings["SOCIALGUARD_STATE"],
        settings["SOCIALGUARD_LOG_DIR"],
    }


def test_dockerfile_copies_only_what_exists_and_is_not_ignored() -> None:
    for word, args in instructions(DOCKERFILE):
        if word != "COPY" or args.startswith("--from"):
            continue
        *sources, _dest = shlex.split(args)
        for src in sources:
            assert (REPO / src).exists(), src
            assert not dockerignored(src), f"{src} is excluded by .dockerignore"


def test_shipped_rules_land_where_the_image_looks_for_them() -> None:
    ins = final_stage(instructions(DOCKERFILE))
    env = " ".join(a for w, a in ins if w == "ENV")
    rules = Path(re.search(r"SOCIALGUARD_RULES=(\S+)", env).group(1))  # type: ignore[union-attr]
    copies = [shlex.split(a) for w, a in ins if w == "COPY" and not a.startswith("--from")]
    assert ["rules/", f"{rules.parent}/"] in copies
    assert (REPO / "rules" / rules.name).is_file()


def _cmd_options() -> dict[str, str]:
    ins = final_stage(instructions(DOCKERFILE))
    (cmd,) = [exec_form(a) for w, a in ins if w == "CMD"]
    assert cmd[0] == "run"
    return dict(zip(cmd[1::2], cmd[2::2], strict=True))


def test_dockerfile_command_options_are_valid() -> None:
    """The image's default is a trial that does something by itself: an explicit proxy on 8080
    (`docker run -p 8080:8080`); transparent mode is the documented override for a gateway."""
    opts = _cmd_options()
    assert opts["--mode"] == "regular"
    assert parse_hostport(opts["--listen"], what="--listen") == ("", 8080)  # both families
    assert parse_admin(opts["--admin"]) == ("127.0.0.1", 9180)


@pytest.mark.parametrize(("healthy", "code"), [(True, 0), (False, 1)])
def test_dockerfile_healthcheck_follows_healthz(healthy: bool, code: int) -> None:
    ins = final_stage(instructions(DOCKERFILE))
    (health,) = [a for w, a in ins if w == "HEALTHCHECK"]
    probe = exec_form(health.split(" CMD ", 1)[1])
    admin_port = _cmd_options()["--admin"].rsplit(":", 1)[1]
    server = AdminServer(Metrics(), {"policy": lambda: healthy})
    server.start()
    try:
        port = str(server.address[1])
        argv = [sys.executable if a == "python" else a.replace(admin_port, port) for a in probe]
        assert argv != probe
        result = subprocess.run(argv, capture_output=True, timeout=30, check=False)
    finally:
        server.stop()
    assert result.returncode == code


def unit_settings() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def test_unit_runs_unprivileged_with_no_capabilities() -> None:
    s = unit_settings()
    assert s["User"] == ["socialguard"]
    assert s["NoNewPrivileges"] == ["yes"]
    assert s["CapabilityBoundingSet"] == [""]
    assert s["AmbientCapabilities"] == [""]
    assert s["ProtectSystem"] == ["strict"]
    assert set(s["ReadWritePaths"][0].split()) == {"/var/lib/socialguard", "/var/log/socialguard"}
    assert s["ReadOnlyPaths"] == ["/etc/socialguard"]


def test_unit_environment_matches_the_writable_paths() -> None:
    s = unit_settings()
    env = dict(e.split("=", 1) for e in s["Environment"])
    writable = s["ReadWritePaths"][0].split()
    assert env["SOCIALGUARD_STATE"] in writable
    assert env["SOCIALGUARD_LOG_DIR"] in writable
    assert env["SOCIALGUARD_CERTS"].startswith(s["ReadOnlyPaths"][0])


def test_unit_command_options_are_valid() -> None:
    argv = shlex.split(unit_settings()["ExecStart"][0])
    opts = dict(zip(argv[2::2], argv[3::2], strict=True))
    assert argv[1] == "run"
    assert parse_hostport(opts["--listen"], what="--listen") == ("", 8080)
    assert parse_admin(opts["--admin"]) == ("127.0.0.1", 9180)


def _unit_for_analysis(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this checkout's command, which exists here."""
    if SYSTEMD_ANALYZE is None:
        pytest.skip("systemd-analyze is not installed")
    exe = Path(sys.executable).parent / "socialguard"
    unit = tmp_path / "socialguard.service"
    unit.write_text(UNIT.read_text().replace("/opt/socialguard/bin/socialguard", str(exe)))
    return unit


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    """Verified as on a fresh machine with no manual pages installed: `verify` runs `man` for
    every man: link in Documentation=, and failed where nftables' pages were absent."""
    unit = _unit_for_analysis(tmp_path)
    no_manuals = tmp_path / "no-manuals"
    no_manuals.mkdir()
    env = {**os.environ, "MANPATH": str(no_manuals)}
    r = subprocess.run([SYSTEMD_ANALYZE, "verify", str(unit)], capture_output=True, text=True,
                       timeout=60, check=False, env=env)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip() == "", r.stderr


def test_systemd_security_review_rates_the_unit_ok(tmp_path: Path) -> None:
    unit = _unit_for_analysis(tmp_path)
    r = subprocess.run(
        [SYSTEMD_ANALYZE, "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d)", r.stdout)
    assert m, r.stdout + r.stderr
    assert float(m.group(1)) <= 2.0, r.stdout  # "OK" band is below 3.0; we hold 2.0


def test_sysctl_file_sets_what_the_ruleset_header_asks_for() -> None:
    text = (REPO / "packaging" / "sysctl.d" / "90-socialguard.conf").read_text()
    for key in ("net.ipv4.ip_forward = 1", "net.ipv6.conf.all.forwarding = 1",
                "net.ipv4.conf.all.send_redirects = 0"):  # fmt: skip
        assert key in text


def test_unit_links_only_to_documentation_that_ships_with_it() -> None:
    """No man: page another package may not have installed, no web address nobody vouches for."""
    assert "Documentation" not in unit_settings()
    urls = re.findall(r"\w+://[^\s/]+", UNIT.read_text())
    assert urls and all(u.endswith("://127.0.0.1:9180") for u in urls), urls


def test_the_image_and_the_unit_read_the_rules_from_the_same_path() -> None:
    env = " ".join(a for w, a in final_stage(instructions(DOCKERFILE)) if w == "ENV")
    image = re.search(r"SOCIALGUARD_RULES=(\S+)", env).group(1)  # type: ignore[union-attr]
    unit = dict(e.split("=", 1) for e in unit_settings()["Environment"])["SOCIALGUARD_RULES"]
    assert image == unit == "/etc/socialguard/rules/policy.yaml"


def test_the_dockerfile_header_says_how_to_run_it_transparently() -> None:
    header = DOCKERFILE.read_text().split("ARG ", 1)[0]
    assert "-p 8080:8080" in header
    assert "run --mode transparent --listen '*:8080'" in header
