"""Interactions: an authorization request waiting for the citizen (login, second factor, consent).

As in node-oidc-provider, the protocol core only decides that a prompt is needed, saves what the
pages need under a random id and sends the browser to them; the page finishes by redirecting to
``resume``, where ``/authorize`` picks the request up again. Protocol code never renders a form and
the pages never parse OAuth parameters.
"""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass, field
from urllib.parse import urlsplit

from idp.store import get_store

TTL = 30 * 60  # long enough to register an account in the middle of a login


@dataclass
class Interaction:
    uid: str
    resume: str                      # local path that continues the authorization
    client_id: str = ""
    client_name: str = ""
    prompt: str = "login"            # "login", "mfa" or "consent"
    login_hint: str = ""
    ui_locales: str = ""
    required_acr: int = 1            # level of assurance the portal needs (1, 2, 3)
    allowed_factors: list[str] = field(default_factory=list)  # empty: any second factor
    details: dict = field(default_factory=dict)  # prompt-specific data (e.g. scopes for consent)


def create(**kwargs: object) -> Interaction:
    uid = secrets.token_urlsafe(24)
    interaction = Interaction(uid=uid, **kwargs)  # type: ignore[arg-type]
    save(interaction)
    return interaction


def save(interaction: Interaction) -> None:
    get_store().put(f"interaction:{interaction.uid}", asdict(interaction), TTL)


def load(uid: str | None) -> Interaction | None:
    if not uid or len(uid) > 64:
        return None
    data = get_store().get(f"interaction:{uid}")
    return Interaction(**data) if data else None


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
