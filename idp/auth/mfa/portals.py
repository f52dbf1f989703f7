"""Portals that will refuse a citizen who has no second factor left.

Used to warn before the last authenticator is removed: the portals the citizen consented to (and
has not withdrawn from) whose registered minimum level of assurance is 2 or more.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from idp.models import Citizen, Client, ConsentRecord


def portals_requiring_second_factor(session: Session, citizen: Citizen) -> list[str]:
    latest = (
        select(func.max(ConsentRecord.id))
        .where(ConsentRecord.citizen_id == citizen.id)
        .group_by(ConsentRecord.client_id)
    )
    stmt = (
        select(Client.name)
        .join(ConsentRecord, ConsentRecord.client_id == Client.client_id)
        .where(ConsentRecord.id.in_(latest), ConsentRecord.action != "withdrawn",
               Client.minimum_loa >= 2, Client.active.is_(True))
        .order_by(Client.name)
    )
    return list(session.scalars(stmt))
