"""The revision scripts, one per schema change, in one linear history (a single head)."""
