"""/metrics speaks services: requests and visits per service and action."""

from __future__ import annotations

from socialguard.deploy.metrics import Metrics


def test_requests_and_visits_are_counted_per_service_and_action() -> None:
    m = Metrics()
    m.service("facebook", "block", visit=True)
    for _ in range(3):
        m.service("facebook", "block", visit=False)
    m.service("tiktok", "allow", visit=False)
    text = m.render().decode()
    assert 'socialguard_service_requests_total{action="block",service="facebook"} 4.0' in text
    assert 'socialguard_service_visits_total{action="block",service="facebook"} 1.0' in text
    assert 'socialguard_service_requests_total{action="allow",service="tiktok"} 1.0' in text
    assert 'socialguard_service_visits_total{action="allow",service="tiktok"}' not in text
