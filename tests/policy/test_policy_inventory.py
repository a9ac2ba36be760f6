"""Device inventories (CSV and YAML) and list references with an explicit format."""

from __future__ import annotations

from pathlib import Path

import pytest

from socialguard.errors import PolicyError
from socialguard.policy import load_policy, resolve_principal

POLICY = """\
district: {name: D}
groups:
  laptops: {devices: devices.%s}
categories:
  social:
    lists: [{path: social.hosts, format: hosts}]
"""


def _write(tmp_path: Path, ext: str, inventory: str) -> Path:
    (tmp_path / f"devices.{ext}").write_text(inventory, encoding="utf-8")
    (tmp_path / "social.hosts").write_text(
        "0.0.0.0 facebook.com\n0.0.0.0 x.com\n", encoding="utf-8"
    )
    path = tmp_path / "p.yaml"
    path.write_text(POLICY % ext, encoding="utf-8")
    return path


def test_a_yaml_inventory_and_a_hosts_format_list(tmp_path: Path) -> None:
    path = _write(tmp_path, "yaml", "- {device: lt-1, mac: 'aa:bb:cc:00:00:01', owner: jdoe}\n")
    policy = load_policy(path)
    assert policy.categories["social"].domain_count == 2
    p = resolve_principal(policy, "10.0.0.9", mac="AA-BB-CC-00-00-01")
    assert (p.device, p.user, p.groups) == ("lt-1", "jdoe", {"laptops"})
    assert tmp_path / "devices.yaml" in policy.source_files


@pytest.mark.parametrize(
    ("inventory", "expected"),
    [
        (
            "device,mac,ip,owner\nlt-1,not-a-mac,,\n",
            "devices.csv:2: mac: not a MAC address: 'not-a-mac'",
        ),
        (
            "device,mac,ip,owner\nlt-1,,10.0.0.999,\n",
            "devices.csv:2: ip: not an IP address: '10.0.0.999'",
        ),
        (
            "device,mac,ip,owner\nlt-1,,,\n",
            "devices.csv:2: device: device 'lt-1' needs a mac or an ip",
        ),
        (
            "mac,ip\naa:bb:cc:00:00:01,\n",
            "devices.csv:1: the header row must name a 'device' column",
        ),
    ],
)
def test_a_bad_inventory_row_is_located(tmp_path: Path, inventory: str, expected: str) -> None:
    path = _write(tmp_path, "csv", inventory)
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    (problem,) = info.value.problems
    assert str(problem).replace(f"{tmp_path}/", "").startswith(expected)
