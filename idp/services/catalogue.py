"""What the services home shows: the life events, and the portals grouped under them.

The list of life events is fixed (``idp.models.oidc.LIFE_EVENTS``) and translated here; the operator
assigns events to a portal (``flask clients create/update --life-event``). A portal appears once it
has at least one event; its "Masuk" button needs an ``initiate_login_uri`` and its "Adukan" link a
``complaint_uri``.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from flask_babel import LazyString
from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.orm import Session

from idp.models import Client
from idp.models.oidc import LIFE_EVENTS


@dataclass(frozen=True)
class LifeEvent:
    key: str
    label: LazyString
    examples: LazyString  # what a citizen would search for under it


EVENTS = {event.key: event for event in (
    LifeEvent("birth", _l("Birth of a child"), _l("birth certificate, child identity card, immunisation")),
    LifeEvent("education", _l("Education"), _l("school enrolment, scholarships, diplomas")),
    LifeEvent("health", _l("Health"), _l("BPJS Kesehatan, hospitals, clinics, medical records")),
    LifeEvent("social_assistance", _l("Social assistance"), _l("PKH, food aid, cash transfers")),
    LifeEvent("work", _l("Work"), _l("job seeking, pre-employment card, BPJS Ketenagakerjaan")),
    LifeEvent("business", _l("Business licences"), _l("NIB, OSS, permits for a small business")),
    LifeEvent("tax", _l("Tax"), _l("NPWP, annual tax return, vehicle tax")),
    LifeEvent("population_documents", _l("Population documents"),
              _l("KTP-el, family card, change of address")),
    LifeEvent("retirement", _l("Retirement"), _l("pension, old-age savings")),
    LifeEvent("death", _l("Death of a relative"), _l("death certificate, inheritance, survivor's benefits")),
)}
assert tuple(EVENTS) == LIFE_EVENTS


@dataclass(frozen=True)
class Group:
    event: LifeEvent
    services: list[Client]


def _fold(text: str) -> str:
    """Case- and accent-insensitive text for matching what a citizen types."""
    return "".join(c for c in unicodedata.normalize("NFKD", text.casefold()) if not unicodedata.combining(c))


def _matches(client: Client, event: LifeEvent, words: list[str]) -> bool:
    haystack = _fold(" ".join([client.name, client.description, client.purpose, str(event.label),
                               str(event.examples)]))
    return all(word in haystack for word in words)


def listed(session: Session) -> list[Client]:
    """The active portals assigned to at least one life event, by name."""
    clients = session.scalars(select(Client).where(Client.active.is_(True)).order_by(Client.name))
    return [client for client in clients if client.life_events]


def groups(session: Session, query: str = "") -> list[Group]:
    """The life events in their fixed order, each with its portals that match ``query`` (every word
    of it, in the portal's name, description or purpose, or in the event's name and examples)."""
    words = _fold(query).split()[:10]
    clients = listed(session)
    found = []
    for event in EVENTS.values():
        services = [c for c in clients if event.key in c.life_events and _matches(c, event, words)]
        if services or not words:
            found.append(Group(event, services))
    return found
