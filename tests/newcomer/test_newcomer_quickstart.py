"""The README's quick start, followed literally from a fresh clone, on a PATH that holds none of
the project's system packages.

What it needs of the machine (and only these are on the PATH it runs with): `git` to clone,
`make`, `python3` (>= 3.12, with venv) and a POSIX shell with coreutils. What it shows: `make
install`, `socialguard rules check` on the shipped rules, `make run` serving the block page (at
any hour: the demo rules block social sites for this machine all the time) and stopping cleanly on
Ctrl-C, and `make test` saying what it needs instead of failing obscurely.

One shortcut, to stay within a minute and off the package index: the `python3` on that PATH adds
this checkout's installed dependencies to the virtualenv `make install` creates (a path file), and
pip runs without an index. The clone's own socialguard is what gets installed, and the test
checks that the code it runs is the clone's.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
NEEDED = ("git", "make", "sh", "env", "touch", "rm", "mkdir", "cat", "uname")
PROJECT_SYSTEM_TOOLS = ("chromium", "nft", "curl", "dnsmasq", "ip", "systemd-analyze")

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


def _minimal_path(bin_dir: Path) -> str:
    """A PATH directory with the tools the quick start needs, and nothing else."""
    bin_dir.mkdir()
    for tool in NEEDED:
        found = shutil.which(tool)
        if found is None:
            pytest.skip(f"the quick start needs `{tool}`, which is not installed")
        (bin_dir / tool).symlink_to(found)
    base = (
        Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    )
    deps = sysconfig.get_path("purelib")
    (bin_dir / "python3").write_text(
        "#!/bin/sh\n"
        "# python3 for `make install`: a venv it creates also sees this checkout's dependencies\n"
        f'"{base}" "$@" || exit $?\n'
        'if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then\n'
        f'  for d in "$3"/lib/python3*/site-packages; do echo "{deps}" > "$d/zz-deps.pth"; done\n'
        "fi\n"
    )
    (bin_dir / "python3").chmod(0o755)
    return str(bin_dir)


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    probe = subprocess.run(["git", "-C", str(REPO), "rev-parse"], capture_output=True, check=False)
    if probe.returncode:
        pytest.skip("not a git checkout")
    base = tmp_path_factory.mktemp("newcomer")
    env = {
        "PATH": _minimal_path(base / "bin"),
        "HOME": str(base),
        "LANG": "C.UTF-8",
        "PIP_NO_INDEX": "1",
        "PIP_NO_BUILD_ISOLATION": "0",  # pip reads this as "no build isolation"
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    for tool in PROJECT_SYSTEM_TOOLS:
        assert shutil.which(tool, path=env["PATH"]) is None, tool
    work = base / "socialguard"
    r = subprocess.run(["git", "clone", "-q", str(REPO), str(work)], env=env,
                       capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert r.returncode == 0, r.stderr
    r = subprocess.run(["make", "install"], cwd=work, env=env, capture_output=True, text=True,
                       timeout=180, check=False)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    yield work, env


def test_the_clone_installs_its_own_code(clone: tuple[Path, dict[str, str]]) -> None:
    work, env = clone
    ask = "import socialguard; print(socialguard.__file__)"
    r = subprocess.run([work / ".venv/bin/python", "-c", ask], env=env, capture_output=True,
                       text=True, timeout=60, check=False)  # fmt: skip
    assert r.stdout.strip() == str(work / "src" / "socialguard" / "__init__.py"), r.stderr


def test_rules_check_passes_on_the_shipped_rules(clone: tuple[Path, dict[str, str]]) -> None:
    work, env = clone
    r = subprocess.run([work / ".venv/bin/socialguard", "rules", "check"], cwd=work, env=env,
                       capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith("rules/policy.yaml: valid")


def _wait_for_line(proc: subprocess.Popen[str], needle: str, deadline: float) -> str:
    assert proc.stderr is not None
    seen = ""
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line and proc.poll() is not None:
            break
        seen += line
        if needle in line:
            return line
    raise AssertionError(f"make run never printed {needle!r}:\n{seen}")


def test_make_run_blocks_social_sites_at_any_hour_and_stops_cleanly(
    clone: tuple[Path, dict[str, str]],
) -> None:
    work, env = clone
    proc = subprocess.Popen(
        ["make", "run", "RUN_ARGS=--listen 127.0.0.1:0"], cwd=work, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        line = _wait_for_line(proc, "proxy listening on", time.monotonic() + 60)
        port = int(line.rsplit(":", 1)[1])
        with httpx.Client(proxy=f"http://127.0.0.1:{port}", timeout=30) as client:
            text = client.get("http://www.facebook.com/")
            page = client.get("http://www.facebook.com/", headers={"Accept": "text/html"})
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in the terminal reaches make and the proxy
        _, err = proc.communicate(timeout=60)
    assert text.status_code == 403 and text.headers["content-type"].startswith("text/plain")
    assert "Blocked by Example School District: Facebook (www.facebook.com)" in text.text
    assert page.status_code == 403 and "<html" in page.text.lower()
    # make itself dies of the SIGINT it passes on, as in a terminal; the proxy stops cleanly
    assert proc.returncode in (0, -signal.SIGINT), err
    assert "proxy_stopped" in err, err
    assert "Traceback" not in err, err
    assert any((work / "var" / "log").glob("*.jsonl")), "no decision log was written"


def test_make_test_says_what_it_needs(clone: tuple[Path, dict[str, str]]) -> None:
    work, env = clone
    r = subprocess.run(["make", "test"], cwd=work, env=env, capture_output=True, text=True,
                       timeout=60, check=False)  # fmt: skip
    assert r.returncode != 0
    assert "make test needs curl (apt-get install curl)" in r.stdout + r.stderr
