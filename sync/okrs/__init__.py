"""The OKR catalogue: north star, strategies, cycles, objectives, key results and bets.

`specs` validates API bodies and file entries alike, `catalogue` reads and writes the store,
and `document` imports and exports the whole catalogue as the OKR file (OKRs as code).

May import: sync.store, sync.matching.
"""
