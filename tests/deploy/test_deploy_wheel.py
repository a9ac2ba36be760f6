"""The wheel, as someone outside the checkout gets it: built from this tree, installed into a
fresh virtualenv, and used from a directory that holds no rules.

The fresh virtualenv reuses this one's dependencies through a path file (so the test needs no
package index) while the socialguard it imports is the wheel's: the test asserts that.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.e2e


def _run(*argv: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOCIALGUARD_", "PYTHON"))}
    return subprocess.run(
        [str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=120,
        check=False, env=env,
    )  # fmt: skip


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    r = _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
             "--quiet", "-w", out, REPO)  # fmt: skip
    assert r.returncode == 0, r.stderr
    (built,) = out.glob("socialguard-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The bin/ directory of a fresh virtualenv with the wheel installed."""
    venv = tmp_path_factory.mktemp("venv")
    r = _run(sys.executable, "-m", "venv", "--without-pip", venv)
    assert r.returncode == 0, r.stderr
    ask = "import sysconfig; print(sysconfig.get_path('purelib'))"
    purelib = Path(_run(venv / "bin" / "python", "-c", ask).stdout.strip())
    # dependencies from this virtualenv, after the fresh one's own site-packages
    (purelib / "zz-dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    r = _run(sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install",
             "--no-deps", "--quiet", wheel)  # fmt: skip
    assert r.returncode == 0, r.stderr
    yield venv / "bin"


def test_the_wheel_carries_the_licence_and_the_starter_rules(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), names
    for rel in ("policy.yaml", "demo.yaml", "fingerprints.txt", "lists/social.txt"):
        assert f"socialguard/starter_rules/{rel}" in names
    assert "socialguard/proxy/templates/blockpage.html" in names
    meta = (
        zipfile.ZipFile(wheel)
        .read(next(n for n in names if n.endswith(".dist-info/METADATA")))
        .decode()
    )
    assert "License-Expression: Apache-2.0" in meta


def test_init_lays_out_rules_that_check_clean_outside_the_checkout(
    installed: Path, tmp_path: Path
) -> None:
    where = _run(installed / "python", "-c", "import socialguard; print(socialguard.__file__)")
    assert where.stdout.startswith(str(installed.parent)), where.stdout  # the wheel, not the tree
    site = tmp_path / "site"
    site.mkdir()
    missing = _run(installed / "socialguard", "rules", "check", cwd=site)
    assert missing.returncode == 2 and "rules file not found" in missing.stderr
    made = _run(installed / "socialguard", "init", cwd=site)
    assert made.returncode == 0, made.stderr
    assert "next: socialguard rules check rules/policy.yaml" in made.stdout
    checked = _run(installed / "socialguard", "rules", "check", cwd=site)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "failed" in checked.stdout and ", 0 failed" in checked.stdout
    demo = _run(installed / "socialguard", "rules", "check", "rules/demo.yaml", cwd=site)
    assert demo.returncode == 0, demo.stdout + demo.stderr


def test_init_never_overwrites_the_districts_edits(installed: Path, tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "policy.yaml").write_text("# the district's own\n")
    r = _run(installed / "socialguard", "init", rules)
    assert r.returncode == 2
    assert "already exist; pass --force to overwrite" in r.stderr
    assert (rules / "policy.yaml").read_text() == "# the district's own\n"
    assert not (rules / "demo.yaml").exists()
