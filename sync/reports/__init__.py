"""What leaders read: effort per objective, items and orphans, traces, and snapshots.

May import: sync.store, sync.matching, sync.okrs.
"""
