"""Bringing tracker items in: sync runs (full, incremental, census), the scheduled sync jobs,
and the webhook inbox that applies deliveries one item at a time.

May import: sync.store, sync.matching, sync.reports (a finished sync takes a snapshot).
"""
