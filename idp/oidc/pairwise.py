"""Pairwise subject identifiers (OIDC Core §8.1): each sector sees its own ``sub`` for a citizen.

``sub = base64url(HMAC-SHA256(pairwise_secret, sector || citizen id))``, so two portals of different
sectors cannot join their users without the citizen's consent, and the NIK is never the ``sub``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import urlsplit

from flask import current_app

from idp.models import Client


def sector_of(client: Client) -> str:
    """The sector: the host of the sector_identifier, or of the (single-host) redirect URIs."""
    if client.sector_identifier:
        value = client.sector_identifier
        return (urlsplit(value).hostname or value) if "://" in value else value
    hosts = {urlsplit(u).hostname or "" for u in client.redirect_uris}
    return sorted(hosts)[0] if hosts else client.client_id


def portal_sid(client: Client, sid: str) -> str:
    """The ``sid`` a portal sees for an SSO session: its own for each portal, as node-oidc-provider
    does. One value for every portal would let portals of different sectors join their users on it
    and undo the pairwise ``sub``."""
    secret = current_app.config["IDP"].pairwise_secret.encode()
    digest = hmac.new(secret, f"sid\x00{client.client_id}\x00{sid}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:18]).decode()


def pairwise_subject(client: Client, citizen_id: str) -> str:
    secret = current_app.config["IDP"].pairwise_secret.encode()
    digest = hmac.new(secret, (sector_of(client) + str(citizen_id)).encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
