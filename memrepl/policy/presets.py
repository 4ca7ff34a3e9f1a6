"""The thresholds of the memory policies, and the named presets (issue 6).

What this module owns: :class:`PolicyConfig`, a frozen value holding every threshold, and
:data:`PRESETS`. The rule that keeps it right: a config is validated when it is built, so a
policy never runs with a threshold it cannot interpret; there is no global configuration -- pass
the config to :func:`memrepl.policy.consolidate` (start from a preset and ``dataclasses.replace``
what you want changed).

``balanced`` is the default (the original system's preset); ``aggressive`` promotes, consolidates
and forgets sooner, ``conservative`` later.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from memrepl.errors import PolicyConfigError

_NS_PER_S = 1_000_000_000
_MINUTE_NS = 60 * _NS_PER_S
_DAY_NS = 24 * 3_600 * _NS_PER_S


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    """Every threshold of the memory policies. Build one with :meth:`preset`."""

    #: Name of the preset this config started from (informational).
    name: str = "balanced"
    # -- working -> episodic (promotion.py) --
    #: Local reads (``access_count``) a working item needs before it is promoted.
    promote_min_accesses: int = 3
    #: Working score (priority, accesses, recency; ``memrepl.storage.working``) it needs.
    promote_min_score: float = 0.5
    # -- episodic -> semantic (consolidation.py) --
    #: Live events an episode needs.
    consolidate_min_events: int = 3
    #: Mean ``importance`` of its events (missing counts as 0) it needs.
    consolidate_min_importance: float = 0.6
    #: Summed local ``access_count`` of its events it needs.
    consolidate_min_accesses: int = 2
    #: An episode is closed when an event says ``{"closed": true}`` or its latest event's
    #: ``occurred_at_ns`` is at least this old.
    episode_idle_ns: int = 30 * _MINUTE_NS
    #: When the summed importance of events new since the last run reaches this, open episodes
    #: are consolidated too (the other thresholds still apply).
    importance_trigger: float = 5.0
    #: Confidence one piece of evidence gives: ``1 - (1 - c) ** evidence_count``.
    evidence_confidence: float = 0.5
    # -- retention (retention.py) --
    #: Age since the last reinforcement at which a concept's strength halves.
    decay_half_life_ns: int = 30 * _DAY_NS
    #: A concept whose strength falls below this is forgotten (unless pinned).
    forget_threshold: float = 0.05

    def __post_init__(self) -> None:
        for spec in fields(self):
            value = getattr(self, spec.name)
            if spec.name == "name":
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise PolicyConfigError(
                    f"PolicyConfig.{spec.name} must be a non-negative number, not {value!r}",
                    key=spec.name,
                )
        for name in ("promote_min_score", "consolidate_min_importance", "forget_threshold"):
            if getattr(self, name) > 1:
                raise PolicyConfigError(f"PolicyConfig.{name} must be in [0, 1]", key=name)
        if not 0 < self.evidence_confidence < 1:
            raise PolicyConfigError(
                "PolicyConfig.evidence_confidence must be in (0, 1)", key="evidence_confidence"
            )
        if self.decay_half_life_ns <= 0:
            raise PolicyConfigError(
                "PolicyConfig.decay_half_life_ns must be positive", key="decay_half_life_ns"
            )

    @classmethod
    def preset(cls, name: str = "balanced", **overrides: Any) -> PolicyConfig:
        """The preset ``name`` (``balanced``, ``aggressive``, ``conservative``), with
        ``overrides`` applied. PolicyConfigError for an unknown name or a bad threshold."""
        try:
            base = PRESETS[name]
        except KeyError:
            raise PolicyConfigError(
                f"unknown policy preset {name!r}: expected one of {sorted(PRESETS)}", key="name"
            ) from None
        return replace(base, **overrides) if overrides else base


#: The named presets.
PRESETS: dict[str, PolicyConfig] = {
    "balanced": PolicyConfig(),
    "aggressive": PolicyConfig(
        name="aggressive",
        promote_min_accesses=2,
        promote_min_score=0.3,
        consolidate_min_events=2,
        consolidate_min_importance=0.4,
        consolidate_min_accesses=1,
        episode_idle_ns=10 * _MINUTE_NS,
        importance_trigger=3.0,
        decay_half_life_ns=7 * _DAY_NS,
        forget_threshold=0.1,
    ),
    "conservative": PolicyConfig(
        name="conservative",
        promote_min_accesses=5,
        promote_min_score=0.7,
        consolidate_min_events=5,
        consolidate_min_importance=0.8,
        consolidate_min_accesses=3,
        episode_idle_ns=120 * _MINUTE_NS,
        importance_trigger=10.0,
        decay_half_life_ns=90 * _DAY_NS,
        forget_threshold=0.02,
    ),
}
