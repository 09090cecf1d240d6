"""The Jinja2 environment every page renders with."""

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from services.coupons.store.dashboard_sessions import Session

templates = Jinja2Templates(directory=Path(__file__).parent / "templates")


def render(
    request: Request,
    name: str,
    session: Session | None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """A page, with the signed-in key (or none) for the layout's header and forms."""
    return templates.TemplateResponse(
        request, name, {"session": session, **context}, status_code=status_code
    )


def money(minor: int | None, currency: str | None = None) -> str:
    if minor is None:
        return "\N{EN DASH}"
    text = f"{minor / 100:,.2f}"
    return f"{text} {currency.upper()}" if currency else text


def detail(value: Any, prefix: str = "") -> str:
    """An audit entry's detail as `key value · key value`, nested keys dotted, empty values
    left out: readable at a glance where the JSON would not be."""
    if not isinstance(value, dict):
        return str(value)
    parts = []
    for key, item in value.items():
        name = f"{prefix}{key}"
        if isinstance(item, dict):
            if inner := detail(item, f"{name}."):
                parts.append(inner)
        elif item not in (None, "", [], ()):
            shown = ", ".join(map(str, item)) if isinstance(item, list | tuple) else item
            parts.append(f"{name} {shown}")
    return " · ".join(parts)


def epoch(seconds: int | None) -> str:
    """Epoch seconds as a UTC time."""
    if seconds is None:
        return "\N{EN DASH}"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")


templates.env.filters["money"] = money
templates.env.filters["epoch"] = epoch
templates.env.filters["detail"] = detail
