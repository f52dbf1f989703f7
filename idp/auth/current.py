"""The citizen of this request, from its SSO session; and ``login_required`` for citizen pages."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from typing import Any, TypeVar, cast

from flask import g, redirect, request, url_for

from idp.auth import session as sso
from idp.db import get_session
from idp.identity import zones
from idp.models import Citizen

F = TypeVar("F", bound=Callable[..., Any])
_CITIZEN = "auth_citizen"  # g: the citizen row, loaded once per request


def current_citizen() -> Citizen | None:
    session = sso.current()
    if session is None:
        return None
    cached: Citizen | None = g.get(_CITIZEN)
    if cached is None or str(cached.id) != session.citizen_id:
        cached = get_session().get(Citizen, uuid.UUID(session.citizen_id))
        setattr(g, _CITIZEN, cached)
    return cached if cached is not None and cached.closed_at is None else None


def time_zone() -> str | None:
    """The signed-in citizen's zone: their choice, else their NIK's province's (``i18n`` hook)."""
    citizen = current_citizen()
    if citizen is None:
        return None
    return zones.of_citizen(citizen)


def login_required(view: F) -> F:
    """Send a visitor without a session to the login page, and back here afterwards."""

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if current_citizen() is None:
            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
        return view(*args, **kwargs)

    return cast(F, wrapped)
