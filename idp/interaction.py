"""Interactions: an authorization request waiting for the citizen (login, second factor, consent).

As in node-oidc-provider, the protocol core only decides that a prompt is needed, saves what the
pages need under a random id and sends the browser to them. A page finishes the same way for every
prompt (``finish``, node-oidc-provider's ``interactionFinished``): it writes its outcome into the
record and redirects to ``resume``, where ``/authorize`` reads the outcome and picks the request up
again. Protocol code never renders a form and the pages never parse OAuth parameters.
"""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import urlsplit

from idp import i18n, state
from idp.state import Interaction

__all__ = ["Interaction", "create", "finish", "load", "safe_next", "save", "use"]


def create(**fields: Any) -> Interaction:
    interaction = Interaction(uid=secrets.token_urlsafe(24), **fields)
    save(interaction)
    return interaction


def save(interaction: Interaction) -> None:
    state.interactions.put(interaction, interaction.uid)


def load(uid: str | None) -> Interaction | None:
    if not uid or len(uid) > 64:
        return None
    return state.interactions.get(uid)


def use(uid: str | None) -> Interaction | None:
    """Load the interaction a page was sent with and speak the language the portal asked for."""
    interaction = load(uid)
    if interaction is not None and interaction.ui_locales:
        i18n.prefer(interaction.ui_locales)
    return interaction


def finish(interaction: Interaction, **result: Any) -> str:
    """Record what the page decided and return where the browser goes to resume the request."""
    interaction.result.update(result)
    save(interaction)
    return interaction.resume


def safe_next(target: str | None) -> str | None:
    """Accept only a local path as a place to go after login (no open redirect).

    Browsers drop tabs and newlines inside a URL and read a backslash as a slash, so a
    slash, a tab and a host name would become ``//host``: any control character, space or
    backslash refuses the target outright.
    """
    if not target or not target.startswith("/") or target.startswith("//"):
        return None
    if "\\" in target or any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in target):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    return target
