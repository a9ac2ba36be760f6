"""The printed dnsmasq configuration: canaries, nftset= lines for the policy's domains."""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from socialguard.deploy.dnsmasq import (
    MAX_LINE,
    minimal_domains,
    render_dnsmasq,
    steered_domains,
)

DNSMASQ = shutil.which("dnsmasq")


def _rule(rule_id: str, tags: set[str], urls: tuple[str, ...] = (), any_destination: bool = False):
    return SimpleNamespace(
        id=rule_id,
        source=f"policy.yaml:{len(rule_id)}",
        tags=frozenset(tags),
        urls=tuple(SimpleNamespace(host=h) for h in urls),
        any_destination=any_destination,
    )


def _policy(rules, index: dict[str, set[str]], categories=("social", "doh", "news"), networks=()):
    """Shaped like engine.compiled.CompiledPolicy, as far as steered_domains reads it."""
    return SimpleNamespace(
        rules=tuple(rules),
        index=SimpleNamespace(items={d: frozenset(t) for d, t in index.items()}.items),
        categories={c: object() for c in categories},
        ip_index=SimpleNamespace(entries=tuple(networks)),
    )


INDEX = {
    "facebook.com": {"category:social"},
    "m.facebook.com": {"category:social"},
    "instagram.com": {"category:social"},
    "bbc.co.uk": {"category:news"},
    "dns.google": {"category:doh"},
    "cloudflare-dns.com": {"category:doh"},
    "classroom.example": {"rule:approved"},
}


def test_every_domain_a_rule_names_is_steered_and_nothing_else() -> None:
    policy = _policy(
        [_rule("staff-social", {"category:social"}), _rule("approved", {"rule:approved"})], INDEX
    )
    d = steered_domains(policy)
    assert d.social == ("facebook.com", "instagram.com", "classroom.example")
    assert d.doh == ("cloudflare-dns.com", "dns.google")


def test_doh_is_steered_even_when_no_rule_names_it() -> None:
    d = steered_domains(_policy([_rule("staff-social", {"category:social"})], INDEX))
    assert set(d.doh) == {"dns.google", "cloudflare-dns.com"}
    assert "bbc.co.uk" not in d.social


def test_approved_page_hosts_are_steered() -> None:
    policy = _policy([_rule("pages", set(), urls=("www.youtube.com",))], INDEX)
    assert "www.youtube.com" in steered_domains(policy).social


def test_a_rule_for_every_destination_is_noted() -> None:
    policy = _policy([_rule("doh-by-form", set(), any_destination=True)], INDEX)
    (note,) = steered_domains(policy).notes
    assert "rule doh-by-form" in note
    assert "--mode full" in note


def test_missing_doh_category_is_noted() -> None:
    policy = _policy([_rule("s", {"category:social"})], INDEX, categories=("social",))
    assert any("no `doh` category" in n for n in steered_domains(policy).notes)


def test_address_ranges_a_rule_names_are_noted() -> None:
    net = ipaddress.ip_network("157.240.0.0/16")
    policy = _policy([_rule("s", {"category:social"})], INDEX, networks=[(net, "category:social")])
    assert any("157.240.0.0/16" in n for n in steered_domains(policy).notes)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (["m.facebook.com", "facebook.com"], ("facebook.com",)),
        (["Facebook.COM.", "facebook.com"], ("facebook.com",)),
        (["notfacebook.com", "facebook.com"], ("facebook.com", "notfacebook.com")),
        (["a.b.example", "b.example", "c.example"], ("b.example", "c.example")),
        (["", "  "], ()),
    ],
)
def test_minimal_domains(given: list[str], expected: tuple[str, ...]) -> None:
    assert minimal_domains(given) == expected


def test_canaries_answer_nxdomain() -> None:
    text = render_dnsmasq(None)
    for name in ("use-application-dns.net", "mask.icloud.com", "mask-h2.icloud.com"):
        assert f"address=/{name}/\n" in text
    assert "nftset=" not in text


def test_nftset_lines_name_the_rulesets_sets() -> None:
    d = steered_domains(_policy([_rule("s", {"category:social"})], INDEX))
    lines = render_dnsmasq(d).splitlines()
    assert (
        "nftset=/facebook.com/instagram.com/"
        "4#inet#socialguard#social_v4,6#inet#socialguard#social_v6" in lines
    )
    assert (
        "nftset=/cloudflare-dns.com/dns.google/4#inet#socialguard#doh_v4,6#inet#socialguard#doh_v6"
        in lines
    )


def test_long_lists_are_split_into_lines_dnsmasq_can_read() -> None:
    index = {f"site{i:05d}.example": {"category:social"} for i in range(3000)}
    d = steered_domains(_policy([_rule("s", {"category:social"})], index))
    lines = [ln for ln in render_dnsmasq(d).splitlines() if ln.startswith("nftset=/site")]
    assert len(lines) > 1
    assert all(len(ln) <= MAX_LINE for ln in lines)
    listed = [x for ln in lines for x in ln.split("/")[1:-1]]
    assert sorted(listed) == sorted(index)


def test_dnsmasq_accepts_the_configuration(tmp_path: Path) -> None:
    if DNSMASQ is None:
        pytest.skip("dnsmasq is not installed (apt-get install dnsmasq-base)")
    d = steered_domains(_policy([_rule("s", {"category:social"})], INDEX))
    conf = tmp_path / "socialguard.conf"
    conf.write_text(render_dnsmasq(d))
    r = subprocess.run(
        [DNSMASQ, "--test", f"--conf-file={conf}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert r.returncode == 0, r.stderr


def _cli(*args: str) -> tuple[int, str, str]:
    from typer.testing import CliRunner

    from socialguard.cli import app

    r = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    return r.exit_code, r.stdout, r.stderr


def test_shipped_policy_steers_its_social_and_doh_domains(repo_root: Path, tmp_path: Path) -> None:
    code, out, err = _cli("deploy", "dnsmasq", "--rules", str(repo_root / "rules" / "policy.yaml"))
    assert code == 0, err
    social = [ln for ln in out.splitlines() if ln.startswith("nftset=") and "#social_v4" in ln]
    doh = [ln for ln in out.splitlines() if ln.startswith("nftset=") and "#doh_v4" in ln]
    social_domains = {d for ln in social for d in ln.split("/")[1:-1]}
    doh_domains = {d for ln in doh for d in ln.split("/")[1:-1]}
    assert {"facebook.com", "instagram.com", "tiktok.com"} <= social_domains
    assert "dns.google" in doh_domains
    assert not social_domains & doh_domains
    if DNSMASQ is not None:
        conf = tmp_path / "socialguard.conf"
        conf.write_text(out)
        r = subprocess.run([DNSMASQ, "--test", f"--conf-file={conf}"], capture_output=True,
                           text=True, timeout=30, check=False)  # fmt: skip
        assert r.returncode == 0, r.stderr


def test_canaries_only_needs_no_rules() -> None:
    code, out, _ = _cli("deploy", "dnsmasq", "--canaries-only", "--rules", "/nonexistent.yaml")
    assert code == 0
    assert "address=/use-application-dns.net/" in out
    assert "nftset=" not in out


def test_bad_rules_file_is_refused_with_file_line_and_field(tmp_path: Path) -> None:
    rules = tmp_path / "policy.yaml"
    rules.write_text("district: {name: x, timezone: Nowhere/Zone}\nrules: []\n")
    code, out, err = _cli("deploy", "dnsmasq", "--rules", str(rules))
    assert code == 2
    assert out == ""
    assert err.startswith(f"error: {rules}:1: district.timezone:")


def test_missing_rules_file_is_bad_input() -> None:
    code, _, err = _cli("deploy", "dnsmasq", "--rules", "/nonexistent/policy.yaml")
    assert code == 2
    assert "/nonexistent/policy.yaml" in err
