"""Golden files: the expected normalised item of each reference payload, reviewed by hand.

`LADDER_UPDATE_GOLDEN=1 pytest tests/test_<tracker>_mapping.py` rewrites them after a deliberate
mapping change; review the diff before committing it.
"""

from __future__ import annotations

import json
import os
from dataclasses import fields
from datetime import datetime
from pathlib import Path
from typing import Any

from integrations.base import NormalisedItem

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
UPDATE = os.environ.get("LADDER_UPDATE_GOLDEN") == "1"


def as_json(item: NormalisedItem) -> dict[str, Any]:
    """The item as the golden files store it: every field but `raw`, times in ISO form."""
    out: dict[str, Any] = {}
    for f in fields(item):
        if f.name == "raw":
            continue
        value = getattr(item, f.name)
        if isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def assert_golden(directory: Path, name: str, actual: dict[str, Any]) -> None:
    """`actual` equals the golden file `directory/name.json` (rewritten first when updating)."""
    path = directory / f"{name}.json"
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(actual, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    assert actual == json.loads(path.read_text(encoding="utf-8"))
