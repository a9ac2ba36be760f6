"""The shipped service catalogue (rules/services.yaml) agrees with the shipped lists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from socialguard.engine import CompiledPolicy
from socialguard.engine.services import SHARED_INFRASTRUCTURE, shared_infrastructure
from socialguard.policy import load_policy

RULES = Path(__file__).resolve().parents[2] / "rules"
SERVICE_LISTS = ["lists/social.txt", "lists/messaging.txt", "lists/webmail.txt"]


def _groups(path: Path) -> list[tuple[str, list[str]]]:
    """The list's domains grouped by their `# Service` comment (after the file's header)."""
    out: list[tuple[str, list[str]]] = []
    started = False
    for line in path.read_text(encoding="utf-8").splitlines():
        text = line.strip()
        if not started:
            started = text.startswith("# Format:")
            continue
        if text.startswith("#"):
            out.append((text[1:].strip(), []))
        elif text and out:
            out[-1][1].append(text.split()[0].lower())
    return out


GROUPS = [(lst, name, domains) for lst in SERVICE_LISTS for name, domains in _groups(RULES / lst)]


@pytest.fixture(scope="module")
def shipped() -> CompiledPolicy:
    return load_policy(RULES / "policy.yaml")


def test_every_list_groups_its_domains_by_service() -> None:
    assert len(GROUPS) > 100
    assert all(domains for _, _, domains in GROUPS)


@pytest.mark.parametrize(("lst", "name", "domains"), GROUPS, ids=[g[1] for g in GROUPS])
def test_each_service_of_the_lists_is_in_the_catalogue_with_all_its_domains(
    shipped: CompiledPolicy, lst: str, name: str, domains: list[str]
) -> None:
    base = re.sub(r"\s*\(.*\)$", "", name)
    service = shipped.services.find(name) or shipped.services.find(base)
    assert service is not None, f"{lst}: {name!r} has no service in rules/services.yaml"
    missing = [d for d in domains if d not in service.domains]
    assert not missing, f"{service.id} lacks {missing} (listed under {name!r} in {lst})"


def test_every_service_domain_is_blocked_somewhere_in_the_shipped_lists(
    shipped: CompiledPolicy,
) -> None:
    unlisted = [
        (s.id, d)
        for s in shipped.services.services.values()
        for d in s.domains
        if not any(t.startswith("category:") for t in shipped.classify(d))
    ]
    assert unlisted == []


def test_no_service_holds_shared_infrastructure(shipped: CompiledPolicy) -> None:
    found = [
        (s.id, d)
        for s in shipped.services.services.values()
        for d in s.domains
        if shared_infrastructure(d) is not None
    ]
    assert found == []


@pytest.mark.parametrize(
    "cdn", ["akamaihd.net", "cloudfront.net", "googleusercontent.com", "gstatic.com"]
)
def test_the_usual_shared_cdns_are_known_as_shared(cdn: str) -> None:
    assert cdn in SHARED_INFRASTRUCTURE
    assert shared_infrastructure(f"abc.{cdn}") == cdn


@pytest.mark.parametrize(
    ("host", "service"),
    [
        ("www.facebook.com", "facebook"),
        ("static.xx.fbcdn.net", "facebook"),
        ("scontent.xx.fbcdn.net", "facebook"),
        ("connect.facebook.net", "facebook"),
        ("fb.me", "facebook"),
        ("www.instagram.com", "instagram"),
        ("scontent.cdninstagram.com", "instagram"),
        ("www.tiktok.com", "tiktok"),
        ("p16-sign.tiktokcdn-us.com", "tiktok"),
        ("pbs.twimg.com", "x"),
        ("web.whatsapp.com", "whatsapp"),
        ("outlook.live.com", "outlook-com-hotmail"),
    ],
)
def test_a_page_and_its_assets_belong_to_its_service(
    shipped: CompiledPolicy, host: str, service: str
) -> None:
    assert shipped.service_of(host) == service
