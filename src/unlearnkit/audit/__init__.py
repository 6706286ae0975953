"""Per-example unlearning audits: U-LiRA and the NeurIPS 2023 challenge score (docs/audit.md).

Above the comparison run: trains shadow models with the recipe, unlearns with the registered
methods, and scores them with ``unlearnkit.metrics.audit_stats``.
"""

from __future__ import annotations

from unlearnkit.audit.config import AuditConfig, audit_config
from unlearnkit.audit.output import FILES, write_audit
from unlearnkit.audit.run import AuditRun, make_protocol, run_audit, settings_key

__all__ = [
    "FILES",
    "AuditConfig",
    "AuditRun",
    "audit_config",
    "make_protocol",
    "run_audit",
    "settings_key",
    "write_audit",
]
