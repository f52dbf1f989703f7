"""Declarative base, naming convention and shared column types."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from typing import Annotated

from sqlalchemy import BigInteger, DateTime, Integer, MetaData, String, TypeDecorator, Uuid
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, mapped_column

from idp import clock

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timestamps stored and returned as aware UTC, on SQLite as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given for a UTC column")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def secret_digest(secret: str) -> str:
    """How a random secret is kept: client secrets, refresh tokens, codes, session cookies, links.

    Each carries 128 bits or more of randomness, so one SHA-256 is enough: there is no dictionary to
    guess from, and a slow hash would only cost every request time. (Passwords are argon2id.)
    """
    return hashlib.sha256(secret.encode()).hexdigest()


def utcnow() -> dt.datetime:
    return clock.now()


uuid_pk = Annotated[uuid.UUID, mapped_column(Uuid, primary_key=True, default=uuid.uuid4)]
timestamp = Annotated[dt.datetime, mapped_column(UTCDateTime, default=utcnow)]
timestamp_or_none = Annotated[dt.datetime | None, mapped_column(UTCDateTime, nullable=True)]
str16 = Annotated[str, mapped_column(String(16))]
str255 = Annotated[str, mapped_column(String(255))]


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dt.datetime: UTCDateTime, uuid.UUID: Uuid}


#: A 64-bit id for tables that grow with every sign-on (an INTEGER rowid alias on SQLite, which only
#: autoincrements that type): 170 million rows a day outgrow 32 bits in under a fortnight.
BigId = BigInteger().with_variant(Integer, "sqlite")
