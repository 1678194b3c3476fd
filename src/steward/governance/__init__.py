"""Governance: the tamper-evident audit trail, model cards, SBOM, security review checks."""

from steward.governance.audit import AuditEntry, AuditTrail, AuditVerification, actor_name, digest

__all__ = ["AuditEntry", "AuditTrail", "AuditVerification", "actor_name", "digest"]
