"""Revoking what portals hold: one grant with every token issued from it, or all of a citizen's.

A grant is one authorization of a portal by a citizen; every code, access token and refresh token
carries its grant id (as in node-oidc-provider), so one statement revokes a whole family: a replayed
code (RFC 6749 §4.1.2), a reused rotated refresh token (RFC 9700 §4.14.2), a refresh token revoked by
its portal (RFC 7009 §2.1). Consent withdrawal, a password reset and an operator's cut-off revoke every
grant of a citizen, for one portal or for all.
"""

from __future__ import annotations

import uuid

from sqlalchemy import update

from idp import audit
from idp.db import get_session, rowcount
from idp.models import Grant, Token
from idp.models.base import utcnow


def revoke_grant(grant_id: str | uuid.UUID, reason: str) -> None:
    """Revoke a grant and every token issued from it."""
    session = get_session()
    gid = uuid.UUID(str(grant_id))
    now = utcnow()
    session.execute(update(Grant).where(Grant.id == gid, Grant.revoked_at.is_(None))
                    .values(revoked_at=now, revoked_reason=reason))
    session.execute(update(Token).where(Token.grant_id == gid, Token.access_revoked_at.is_(None))
                    .values(access_revoked_at=now))
    session.execute(update(Token).where(Token.grant_id == gid, Token.refresh_revoked_at.is_(None))
                    .values(refresh_revoked_at=now))
    grant = session.get(Grant, gid)
    audit.append("grant_revoked", citizen_id=grant.citizen_id if grant else None,
                 client_id=grant.client_id if grant else None, grant_id=str(gid), reason=reason)


def revoke_grants(citizen_id: uuid.UUID, client_id: str | None, reason: str) -> int:
    """Revoke every live grant of a citizen, for one portal (consent withdrawn) or all of them
    (password reset, operator), with every access and refresh token issued from them.

    Bulk updates and one audit event: a citizen may have thousands of grants over the years.
    """
    session = get_session()
    now = utcnow()
    grants = update(Grant).where(Grant.citizen_id == citizen_id, Grant.revoked_at.is_(None))
    # Expired tokens are dead already; only live ones need marking (the grant covers the rest).
    access = update(Token).where(Token.citizen_id == citizen_id, Token.access_revoked_at.is_(None),
                                 Token.access_expires_at > now)
    refresh = update(Token).where(Token.citizen_id == citizen_id, Token.refresh_hash.is_not(None),
                                  Token.refresh_revoked_at.is_(None), Token.refresh_expires_at > now)
    if client_id is not None:
        grants = grants.where(Grant.client_id == client_id)
        access = access.where(Token.client_id == client_id)
        refresh = refresh.where(Token.client_id == client_id)
    count = rowcount(session.execute(grants.values(revoked_at=now, revoked_reason=reason)))
    session.execute(access.values(access_revoked_at=now))
    session.execute(refresh.values(refresh_revoked_at=now))
    audit.append("grants_revoked", citizen_id=citizen_id, client_id=client_id, count=count,
                 reason=reason)
    return count
