"""Where the reference corpus is, and whether this run has it.

The corpus (real payloads and schemas captured by Atlassian, Linear and other projects) is not
part of the project: a clone does not have it. The conformance tests under tests/conformance/
read it from `LADDER_REFERENCE_DIR`, by default `../shared/reference` beside the clone. Without
it they are skipped, except under `CI=true`, where a missing corpus fails the run.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "LADDER_REFERENCE_DIR"
REFERENCE = Path(
    os.environ.get(ENV_VAR, Path(__file__).resolve().parents[3] / "shared" / "reference")
)
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def present() -> bool:
    """Whether the corpus is there (its README marks the folder as the real one)."""
    return (REFERENCE / "README.md").is_file()


def under_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


MISSING = (
    f"the reference corpus is not at {REFERENCE}: set {ENV_VAR} to a copy of it "
    "(it is laid out as `reference/` beside the project's DESIGN.md) to run them"
)
