"""socialguard.audit: the decision log (hash-chained, rotating, durable) and the auditor's tools."""

from .schema import SCHEMA_VERSION, admin_event, decision_event, new_decision_id
from .writer import AuditLog

__all__ = ["SCHEMA_VERSION", "AuditLog", "admin_event", "decision_event", "new_decision_id"]
