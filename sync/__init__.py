"""The engine and its store, in sub-packages by concern.

Each sub-package imports only those above it in this list (a test enforces it), and sync/ as
a whole imports integrations/ but never service/ or an HTTP framework; it receives its
configuration as arguments.

    errors              the domain's errors (it imports nothing of sync)
    store               tables and migrations, sessions, bulk upserts, leases, keyset pages
    matching            which bets and key results each item serves, and each item's state
    okrs                the OKR catalogue, the specs it is validated by, and the OKR file
    reports             effort roll-ups, item listings, orphans, traces and snapshots
    ingest              sync runs, the scheduled sync jobs and the webhook inbox
    comments            orphan comments posted to the trackers

Transactions belong to the caller (a request, a job, a CLI command): nothing here commits
except the jobs, which own their units of work.
"""
