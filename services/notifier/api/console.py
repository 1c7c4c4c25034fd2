"""The incident console: static files at /console/ and the one route its login needs.

The HTML, JS and CSS are public (they carry no data, no build step, nothing from a CDN);
everything they show comes from the /v1 API with the operator's key.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import RedirectResponse
from pydantic import BaseModel
from starlette.staticfiles import StaticFiles

from services.notifier.api.deps import authorize
from services.notifier.auth import SCOPES

CONSOLE_DIR = Path(__file__).resolve().parent.parent / "console"

router = APIRouter()


class WhoAmI(BaseModel):
    """The calling key's name and scopes, so the console can disable what the key may not do."""

    name: str
    scopes: list[str]


@router.get("/v1/whoami", response_model=WhoAmI, tags=["auth"])
async def whoami(request: Request) -> WhoAmI:
    """Who the key is; asks for nothing but the read scope."""
    principal = request.state.principal
    return WhoAmI(name=principal.name, scopes=[s for s in SCOPES if principal.allows(s)])


@router.get("/", include_in_schema=False)
async def root() -> RedirectResponse:
    return RedirectResponse("/console/", status_code=307, headers=SECURITY_HEADERS)


# What the console loads: its own module script and stylesheet, fetch() to the API on the
# same origin, inline SVG for the chart (styled through CSSOM, which style-src allows). No
# inline script or style, no CDN, no frames, no forms posted anywhere: the meta tag in
# index.html says the same, but only a header can forbid framing (frame-ancestors).
CONSOLE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
               "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CONSOLE_CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class _ConsoleFiles(StaticFiles):
    """StaticFiles that asks browsers to revalidate, so a deploy is seen on the next load,
    and sends the console's security headers (CSP, no framing, no sniffing, no referrer)."""

    def file_response(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        resp = super().file_response(*args, **kwargs)
        resp.headers["Cache-Control"] = "no-cache"
        resp.headers.update(SECURITY_HEADERS)
        return resp


def mount_console(app: FastAPI) -> None:
    """Serve the console at /console/, redirect / to it, and add GET /v1/whoami (keyed)."""
    app.include_router(router, dependencies=[Depends(authorize)])
    app.mount("/console", _ConsoleFiles(directory=CONSOLE_DIR, html=True), name="console")
