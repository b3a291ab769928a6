"""Orphan comments: one helpful comment on each open ticket that serves no bet or key result.

May import: sync.store, sync.matching, sync.reports.
"""
