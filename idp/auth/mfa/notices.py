"""Security notices to a citizen about their login factors, on every verified channel."""

from __future__ import annotations

from typing import Any

from flask_babel import force_locale

from idp import outbox
from idp.db import get_session
from idp.models import Citizen


def notify(citizen: Citizen, subject: Any, body: Any) -> None:
    """Queue a security notice (lazy strings, rendered in the citizen's own language)."""
    with force_locale(citizen.locale):
        outbox.notify_citizen(get_session(), citizen, str(subject), str(body))
