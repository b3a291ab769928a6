"""Matching: which bets and key results each tracker item serves, why, and its state.

`item` holds the pure per-item rules, `rematch` runs them over the store, and `states` works
out in set-based SQL what each item inherits, its state and the effort it counts.

May import: sync.store (and sync.errors, integrations.base).
"""
