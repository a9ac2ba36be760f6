"""socialguard.notify: telling approvers and staff what happened, through the store's outbox.

    notifier = Notifier(store, lambda: policy, node, clock=clock.now).start()   # in the proxy
    notifier.wake()                      # the store changed: a notice may be waiting
    notifier.rules_rejected(path, errors, kept_version)

Who is told is the rules file's `notifications:` (engine/notifications.py); the notices and their
deliveries live in the store (overrides/outbox.py); mail and webhooks are sent here.
"""

from __future__ import annotations

from .channels import DeliveryError, build_mail, post_webhook, send_mail, sign
from .messages import Message, describe, generic_payload, slack_payload, teams_payload
from .metrics import NotificationCounts
from .worker import Notifier, backoff

__all__ = [
    "DeliveryError",
    "Message",
    "NotificationCounts",
    "Notifier",
    "backoff",
    "build_mail",
    "describe",
    "generic_payload",
    "post_webhook",
    "send_mail",
    "sign",
    "slack_payload",
    "teams_payload",
]
