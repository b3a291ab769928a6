"""The OKR API: objectives, key results, bets and check-ins, by key."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api", tags=["okrs"])
