"""The store: every table, its migrations, sessions, and the bulk writes shared by all.

May import: sync.errors, integrations.base.
"""
