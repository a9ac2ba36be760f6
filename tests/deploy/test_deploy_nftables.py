"""The printed nftables ruleset: nft accepts it, and it says what the deployment guide promises."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from socialguard.cli import app
from socialguard.deploy.nftables import (
    Mode,
    RulesetOptions,
    parse_portal,
    parse_resolver,
    parse_subnet,
    render_ruleset,
)
from socialguard.errors import ConfigError

NFT = shutil.which("nft")
UNSHARE = shutil.which("unshare")


def sg(*args: str) -> subprocess.CompletedProcess[str]:
    """The real CLI in-process (typer's runner), shaped like a finished process."""
    r = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    return subprocess.CompletedProcess(list(args), r.exit_code, r.stdout, r.stderr)


def nft_check(text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`nft -c -f` in a throw-away network namespace: nothing is applied anywhere."""
    if NFT is None or UNSHARE is None or os.geteuid() != 0:
        pytest.skip("nft -c needs root, nft and unshare (apt-get install nftables)")
    path = tmp_path / "ruleset.nft"
    path.write_text(text)
    return subprocess.run(
        [UNSHARE, "-n", NFT, "-c", "-f", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def rules_lines(text: str) -> list[str]:
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]


V4 = parse_subnet("10.20.0.0/16")
V6 = parse_subnet("fd20::/48")

VARIANTS = {
    "full-interface-only": RulesetOptions(lan=("eth1",)),
    "full-subnets": RulesetOptions(lan=("eth1",), subnets=(V4, V6)),
    "full-workers": RulesetOptions(lan=("eth1", "wlan*"), subnets=(V4,), workers=4),
    "steered-local-resolver": RulesetOptions(lan=("eth1",), subnets=(V4, V6), mode=Mode.STEERED),
    "steered-resolvers-workers": RulesetOptions(
        lan=("br0",),
        subnets=(V4, V6),
        mode=Mode.STEERED,
        workers=2,
        resolvers=(parse_resolver("10.20.0.53"), parse_resolver("fd20::53")),
    ),
    "steered-portals-workers": RulesetOptions(
        lan=("br0",),
        subnets=(V4,),
        mode=Mode.STEERED,
        workers=2,
        portals=(parse_portal("10.20.0.1"), parse_portal("10.20.0.2"), parse_portal("fd20::1")),
    ),
}


@pytest.mark.parametrize("name", VARIANTS)
def test_nft_accepts_the_ruleset(name: str, tmp_path: Path) -> None:
    result = nft_check(render_ruleset(VARIANTS[name]), tmp_path)
    assert result.returncode == 0, result.stderr


def test_full_mode_redirects_web_traffic_of_both_families() -> None:
    lines = rules_lines(render_ruleset(RulesetOptions(lan=("eth1",), subnets=(V4, V6))))
    assert "ip saddr @district_v4 tcp dport { 80, 443 } redirect to :8080" in lines
    assert "ip6 saddr @district_v6 tcp dport { 80, 443 } redirect to :8080" in lines


def test_a_family_without_subnets_is_matched_by_interface() -> None:
    lines = rules_lines(render_ruleset(RulesetOptions(lan=("eth1",), subnets=(V4,))))
    assert "meta nfproto ipv6 tcp dport { 80, 443 } redirect to :8080" in lines
    assert "meta nfproto ipv6 udp dport { 80, 443 } drop" in lines


def test_quic_and_dns_over_tls_are_dropped_for_both_families() -> None:
    lines = rules_lines(render_ruleset(RulesetOptions(lan=("eth1",), subnets=(V4, V6))))
    for fam, s in (("ip", "v4"), ("ip6", "v6")):
        assert f"{fam} saddr @district_{s} udp dport {{ 80, 443 }} drop" in lines
        assert f"{fam} saddr @district_{s} meta l4proto {{ tcp, udp }} th dport 853 drop" in lines


def test_only_the_lan_interface_is_touched() -> None:
    lines = rules_lines(render_ruleset(RulesetOptions(lan=("eth1", "wlan0"))))
    assert lines.count('iifname != { "eth1", "wlan0" } return') == 2


def test_workers_are_spread_by_source_hash_over_consecutive_ports() -> None:
    text = render_ruleset(RulesetOptions(lan=("eth1",), subnets=(V4, V6), workers=3))
    assert "redirect to :jhash ip saddr mod 3 map { 0 : 8080, 1 : 8081, 2 : 8082 }" in text
    assert "redirect to :jhash ip6 saddr mod 3 map { 0 : 8080, 1 : 8081, 2 : 8082 }" in text
    assert "tcp dport 8080-8082 ct status dnat accept" in text


def test_steered_mode_redirects_only_the_sets_and_forces_dns() -> None:
    opts = RulesetOptions(lan=("eth1",), subnets=(V4,), mode=Mode.STEERED)
    lines = rules_lines(render_ruleset(opts))
    assert (
        "ip saddr @district_v4 ip daddr @social_v4 tcp dport { 80, 443 } redirect to :8080" in lines
    )
    assert "ip saddr @district_v4 ip daddr @doh_v4 tcp dport { 80, 443 } redirect to :8080" in lines
    assert not any(
        ln.endswith("tcp dport { 80, 443 } redirect to :8080") and "daddr" not in ln for ln in lines
    )
    assert "ip saddr @district_v4 meta l4proto { tcp, udp } th dport 53 redirect to :53" in lines
    assert "set social_v6 { type ipv6_addr; }" in lines


def test_steered_mode_with_a_district_resolver_dnats_to_it() -> None:
    opts = RulesetOptions(
        lan=("eth1",), subnets=(V4,), mode=Mode.STEERED, resolvers=(parse_resolver("10.20.0.53"),)
    )
    text = render_ruleset(opts)
    assert (
        "ip saddr @district_v4 ip saddr != 10.20.0.53 meta l4proto { tcp, udp } th dport 53 "
        "dnat ip to 10.20.0.53:53" in text
    )


def test_the_routers_own_services_are_not_redirected() -> None:
    lines = rules_lines(render_ruleset(RulesetOptions(lan=("eth1",))))
    start = lines.index("type nat hook prerouting priority dstnat; policy accept;")
    assert lines[start + 2] == "fib daddr type local return"
    assert "redirect" not in " ".join(lines[start : start + 3])


def test_the_sign_in_portals_address_on_the_router_goes_to_the_proxy() -> None:
    """The portal's name points at the router (README: Sign-in page); only its web ports are
    redirected, before the router's own services are left alone, in either mode."""
    for mode in Mode:
        opts = RulesetOptions(
            lan=("eth1",), subnets=(V4,), mode=mode,
            portals=(parse_portal("10.20.0.1"), parse_portal("fd20::1")),
        )  # fmt: skip
        lines = rules_lines(render_ruleset(opts))
        local = lines.index("fib daddr type local return")
        assert lines[local - 2 : local] == [
            "ip saddr @district_v4 ip daddr 10.20.0.1 tcp dport { 80, 443 } redirect to :8080",
            "meta nfproto ipv6 ip6 daddr fd20::1 tcp dport { 80, 443 } redirect to :8080",
        ]


def test_reapplying_flushes_chains_and_district_sets_but_not_the_steered_sets() -> None:
    opts = RulesetOptions(lan=("eth1",), subnets=(V4,), mode=Mode.STEERED)
    lines = rules_lines(render_ruleset(opts))
    flushes = [ln for ln in lines if ln.startswith("flush ")]
    assert flushes == [
        "flush chain inet socialguard prerouting",
        "flush chain inet socialguard input",
        "flush chain inet socialguard forward",
        "flush set inet socialguard district_v4",
    ]
    assert "delete table inet socialguard" not in lines


def test_reapplying_keeps_steered_addresses_and_replaces_the_rest(tmp_path: Path) -> None:
    """Apply twice in one namespace, with an address in the steered set in between."""
    if NFT is None or UNSHARE is None or os.geteuid() != 0:
        pytest.skip("needs root, nft and unshare")
    first = RulesetOptions(lan=("eth1",), subnets=(V4,), mode=Mode.STEERED)
    second = RulesetOptions(
        lan=("eth1",), subnets=(parse_subnet("10.30.0.0/16"),), mode=Mode.STEERED, workers=2
    )
    (tmp_path / "first.nft").write_text(render_ruleset(first))
    (tmp_path / "second.nft").write_text(render_ruleset(second))
    script = (
        f"nft -f {tmp_path / 'first.nft'} && "
        "nft add element inet socialguard social_v4 '{ 192.0.2.7 }' && "
        f"nft -f {tmp_path / 'second.nft'} && nft list table inet socialguard"
    )
    r = subprocess.run([UNSHARE, "-n", "sh", "-c", script], capture_output=True, text=True,
                       timeout=30, check=False)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "192.0.2.7" in r.stdout  # the steered address survived
    assert "10.30.0.0/16" in r.stdout
    assert "10.20.0.0/16" not in r.stdout  # the old subnet went
    # only the second ruleset's four worker-spread redirects; none left over from the first
    assert "redirect to :8080" not in r.stdout
    assert r.stdout.count("redirect to :jhash") == 4


@pytest.mark.parametrize(
    ("opts", "message"),
    [
        (RulesetOptions(lan=()), "--lan: give the interface"),
        (RulesetOptions(lan=("eth 1",)), "--lan 'eth 1': not an interface name"),
        (RulesetOptions(lan=("averyveryverylongname",)), "not an interface name"),
        (RulesetOptions(lan=("eth1",), workers=0), "--workers 0: must be at least 1"),
        (RulesetOptions(lan=("eth1",), proxy_port=0), "--proxy-port 0"),
        (RulesetOptions(lan=("eth1",), proxy_port=65535, workers=2), "65535..65536"),
        (
            RulesetOptions(lan=("eth1",), resolvers=(parse_resolver("10.0.0.1"),)),
            "--resolver: only used with --mode steered",
        ),
    ],
)
def test_bad_options_are_refused_naming_the_option(opts: RulesetOptions, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        render_ruleset(opts)


def test_subnet_with_host_bits_suggests_the_network() -> None:
    with pytest.raises(ConfigError, match=r"did you mean 10\.20\.0\.0/16\?"):
        parse_subnet("10.20.1.1/16")


def test_cli_prints_the_ruleset_with_its_command_in_the_header(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = ["deploy", "nftables", "--lan", "eth1", "--subnet", "10.20.0.0/16", "--workers", "2"]
    monkeypatch.setattr(sys, "argv", ["socialguard", *argv])
    r = sg("deploy", "nftables", "--lan", "eth1", "--subnet", "10.20.0.0/16", "--workers", "2")
    assert r.returncode == 0, r.stderr
    assert (
        "#   socialguard deploy nftables --lan eth1 --subnet 10.20.0.0/16 --workers 2" in r.stdout
    )
    assert nft_check(r.stdout, tmp_path).returncode == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--lan", "eth1", "--subnet", "10.20.0.0/33"], "error: --subnet '10.20.0.0/33'"),
        (["--lan", "eth1", "--mode", "partial"], "error: --mode 'partial': choose full or steered"),
        (["--lan", "eth1", "--mode", "steered", "--resolver", "dns"], "error: --resolver 'dns'"),
        (["--lan", "eth1", "--portal", "sign-in.example"], "error: --portal 'sign-in.example'"),
    ],
)
def test_cli_bad_input_exits_2_with_the_option_named(args: list[str], message: str) -> None:
    r = sg("deploy", "nftables", *args)
    assert r.returncode == 2
    assert r.stderr.startswith(message)
