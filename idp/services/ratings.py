"""Citizens' ratings of the services they used: satisfaction as the measure of a service
(Perpres 82/2023). One rating per citizen, service and month; operators see counts and averages."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from sqlalchemy import case, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from idp import metrics
from idp.models import Client, Grant, ServiceRating
from idp.models.base import utcnow

WIB = dt.timezone(dt.timedelta(hours=7))  # months are counted on the national calendar


class AlreadyRated(Exception):
    """The citizen rated this service this month already."""


def this_month() -> str:
    return utcnow().astimezone(WIB).strftime("%Y-%m")


def has_used(session: Session, citizen_id: uuid.UUID, client_id: str) -> bool:
    """Whether the citizen ever signed in to the portal (a grant exists, even if ended since)."""
    return session.scalar(select(Grant.id).where(Grant.citizen_id == citizen_id,
                                                 Grant.client_id == client_id).limit(1)) is not None


def rated_this_month(session: Session, citizen_id: uuid.UUID) -> set[str]:
    """The portals the citizen rated in the current month."""
    return set(session.scalars(select(ServiceRating.client_id).where(
        ServiceRating.citizen_id == citizen_id, ServiceRating.month == this_month())))


def used(session: Session, citizen_id: uuid.UUID) -> set[str]:
    return set(session.scalars(select(Grant.client_id).where(Grant.citizen_id == citizen_id).distinct()))


def rate(session: Session, citizen_id: uuid.UUID, client_id: str, score: int, comment: str) -> None:
    """Record a rating; ``AlreadyRated`` when one exists for this month."""
    if not 1 <= score <= 5:
        raise ValueError("score must be 1 to 5")
    if client_id in rated_this_month(session, citizen_id):
        raise AlreadyRated
    values = {"citizen_id": citizen_id, "client_id": client_id, "month": this_month(), "score": score,
              "comment": comment.strip()[:1000], "created_at": utcnow()}
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    # ON CONFLICT: the unique index decides, so two tabs posting at once still give one rating,
    # and the request's transaction stays usable.
    stmt = dialect.insert(ServiceRating).values(**values).on_conflict_do_nothing().returning(ServiceRating.id)
    if session.execute(stmt).scalar() is None:
        raise AlreadyRated
    metrics.service_rated(client_id, score)


@dataclass(frozen=True)
class Summary:
    client_id: str
    name: str
    count: int
    average: float
    count_this_month: int
    average_this_month: float | None


def summary(session: Session) -> list[Summary]:
    """Per portal: ratings and their average, in all and this month (one grouped query)."""
    in_month = ServiceRating.month == this_month()
    rows = session.execute(
        select(ServiceRating.client_id, Client.name, func.count(), func.avg(ServiceRating.score),
               func.count(case((in_month, 1))), func.avg(case((in_month, ServiceRating.score))))
        .join(Client, Client.client_id == ServiceRating.client_id)
        .group_by(ServiceRating.client_id, Client.name).order_by(ServiceRating.client_id))
    return [Summary(client_id, name, int(count), round(float(avg), 2), int(count_month),
                    round(float(avg_month), 2) if avg_month is not None else None)
            for client_id, name, count, avg, count_month, avg_month in rows]
