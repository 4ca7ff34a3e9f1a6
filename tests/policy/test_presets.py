"""PolicyConfig: the presets, overrides and validation."""

from __future__ import annotations

import pytest

from memrepl.errors import PolicyConfigError
from memrepl.policy import PRESETS, PolicyConfig


def test_presets_hold_the_issue_thresholds() -> None:
    balanced = PolicyConfig.preset("balanced")
    assert balanced == PolicyConfig() == PolicyConfig.preset()
    assert (balanced.promote_min_accesses, balanced.promote_min_score) == (3, 0.5)
    assert (
        balanced.consolidate_min_events,
        balanced.consolidate_min_importance,
        balanced.consolidate_min_accesses,
    ) == (3, 0.6, 2)
    aggressive = PolicyConfig.preset("aggressive")
    assert (aggressive.promote_min_accesses, aggressive.promote_min_score) == (2, 0.3)
    conservative = PolicyConfig.preset("conservative")
    assert (conservative.promote_min_accesses, conservative.promote_min_score) == (5, 0.7)
    assert sorted(PRESETS) == ["aggressive", "balanced", "conservative"]
    # Ordered: aggressive acts sooner and forgets faster, conservative later and slower.
    assert (
        aggressive.consolidate_min_importance
        < balanced.consolidate_min_importance
        < conservative.consolidate_min_importance
    )
    half_lives = [c.decay_half_life_ns for c in (aggressive, balanced, conservative)]
    assert half_lives == sorted(set(half_lives))


def test_overrides_replace_only_what_they_name() -> None:
    config = PolicyConfig.preset("aggressive", promote_min_accesses=7)
    assert config.promote_min_accesses == 7
    assert config.promote_min_score == 0.3
    assert config.name == "aggressive"


@pytest.mark.parametrize(
    "overrides",
    [
        {"promote_min_score": 1.5},
        {"promote_min_accesses": -1},
        {"forget_threshold": True},
        {"evidence_confidence": 1.0},
        {"decay_half_life_ns": 0},
    ],
)
def test_bad_thresholds_are_refused(overrides: dict[str, object]) -> None:
    with pytest.raises(PolicyConfigError, match="PolicyConfig") as caught:
        PolicyConfig.preset("balanced", **overrides)
    assert caught.value.key == next(iter(overrides))


def test_unknown_preset_is_refused() -> None:
    with pytest.raises(PolicyConfigError, match="unknown policy preset") as caught:
        PolicyConfig.preset("reckless")
    assert caught.value.key == "name"
