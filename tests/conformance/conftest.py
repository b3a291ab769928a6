"""Conformance tests: the project's code against real material it did not write.

Every test in this folder reads the reference corpus (see tests/support/reference.py). Without
the corpus they are skipped, and the run's summary says so in one line; under `CI=true` the
run fails instead. Modules enumerate the corpus at collection time through `corpus()` helpers
that yield nothing when it is absent, so a missing corpus never breaks collection.
"""

from __future__ import annotations

import pytest
from support.reference import MISSING, present, under_ci


@pytest.fixture(autouse=True)
def _reference_corpus() -> None:
    if not present():
        if under_ci():
            pytest.fail(f"CI=true but {MISSING}")
        pytest.skip(MISSING)
