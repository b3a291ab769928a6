"""The dashboard: one static page with a little vanilla JS, served at `/`.

No build step: `index.html`, `app.js` and `style.css` are served as they are. The page
asks for an API token (or takes one from `#token=` in the URL) and reads the JSON API.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

HERE = Path(__file__).parent
ASSETS = {"app.js": "text/javascript", "style.css": "text/css"}

router = APIRouter(include_in_schema=False)


@router.get("/")
def index() -> FileResponse:
    return FileResponse(HERE / "index.html", media_type="text/html")


@router.get("/dashboard/{name}")
def asset(name: str) -> FileResponse:
    if name not in ASSETS:
        raise HTTPException(404, f"no dashboard file {name!r}")
    return FileResponse(HERE / name, media_type=ASSETS[name])
