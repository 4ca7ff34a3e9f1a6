"""Memory policies: automatic tier promotion (L1 -> L2 -> L3), consolidation and retention.

What this package owns (ARCHITECTURE.md, "The tiers", automatic promotion; issue 6): the rules
that move proven items up the tiers and let unused knowledge fade, run by :func:`consolidate`.

The rule that keeps it right: **every policy write is an ordinary replicated write under an id
derived from its source**, and every value it writes is a function of replicated state (or is
written as a per-source field), so two nodes running the same policy on the same data converge
on one item instead of duplicating it. Only the access counts that drive promotion are local.

- :mod:`~.presets`: :class:`PolicyConfig`, the thresholds, and the named presets.
- :mod:`~.promotion`: working -> episodic.
- :mod:`~.consolidation`: episodic -> semantic.
- :mod:`~.retention`: decay and forgetting of semantic concepts.
- :mod:`~.runner`: :func:`consolidate`, all three in order, and its result.
"""

from __future__ import annotations

from memrepl.policy.presets import PRESETS, PolicyConfig
from memrepl.policy.runner import ConsolidationResult, consolidate

__all__ = ["PRESETS", "ConsolidationResult", "PolicyConfig", "consolidate"]
