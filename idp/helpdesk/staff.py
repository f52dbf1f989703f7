"""Helpdesk officers: their accounts, enrolment, sign-in and session.

Staff are not citizens. An operator creates an officer (``flask staff create``), which prints a
one-time enrolment link; there the officer sets a password and an authenticator app, without which
they cannot sign in. Sign-in is the password then a code from the app (level 2), and gives a session
of its own, in its own cookie (``satuid_staff``), ended after ``staff_idle_seconds`` without a request
(15 minutes by default) and after a working day at most. A citizen's SSO session never opens it.
"""

from __future__ import annotations

import datetime as dt
import functools
import hmac
import secrets
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar, cast

import pyotp
from flask import current_app, g, redirect, request, url_for
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from idp import clock, state
from idp.auth.mfa import totp
from idp.codes import digits
from idp.config import Settings
from idp.db import get_session, rowcount
from idp.identity import passwords
from idp.models import StaffMember
from idp.models.base import secret_digest, utcnow
from idp.models.helpdesk import ROLES
from idp.state import StaffSession

F = TypeVar("F", bound=Callable[..., Any])
ENROLMENT_DAYS = 3
MAX_SESSION_SECONDS = 10 * 3600  # a working day; idle expiry is the store's lifetime
_CURRENT = "staff_member"        # g: this request's officer, once loaded
_COOKIE = "staff_cookie"         # g: "" clears the cookie, a value sets it


class StaffError(Exception):
    """An operator's request about staff that cannot be done (shown by the command)."""


def _settings() -> Settings:
    settings: Settings = current_app.config["IDP"]
    return settings


def cookie_name() -> str:
    return "__Host-satuid_staff" if _settings().secure_cookies else "satuid_staff"


# ---- accounts (operator commands) ----------------------------------------------------------------

def _enrolment_token(member: StaffMember) -> str:
    token = secrets.token_urlsafe(32)
    member.enrolment_hash = secret_digest(token)
    member.enrolment_expires_at = utcnow() + dt.timedelta(days=ENROLMENT_DAYS)
    return token


def create(session: Session, *, name: str, email: str, nik: str, role: str) -> tuple[StaffMember, str]:
    """A new officer, and the token of their one-time enrolment link."""
    email = canonical_email(email)
    if role not in ROLES:
        raise StaffError(f"role must be one of {', '.join(ROLES)}")
    if not name.strip() or "@" not in email or not (nik.isascii() and nik.isdigit() and len(nik) == 16):
        raise StaffError("give a name, an email address and the officer's 16-digit NIK")
    if session.scalar(select(StaffMember.id).where(StaffMember.email == email)) is not None:
        raise StaffError("an officer with this email address exists")
    # One person, one account: with two (an agent and a supervisor) one could approve their own
    # proposal.
    if session.scalar(select(StaffMember.id).where(StaffMember.nik == nik,
                                                   StaffMember.disabled_at.is_(None))) is not None:
        raise StaffError("an active officer already has this NIK; disable that account first")
    member = StaffMember(name=name.strip(), email=email, nik=nik, role=role)
    token = _enrolment_token(member)
    session.add(member)
    session.flush()
    return member, token


def canonical_email(email: str) -> str:
    """How an officer's address is kept, looked up and counted (lockout) alike."""
    return email.strip().lower()


def find(session: Session, email: str) -> StaffMember | None:
    return session.scalar(select(StaffMember).where(StaffMember.email == canonical_email(email)))


def disable(session: Session, member: StaffMember) -> None:
    """No more sign-ins; sessions already open end at their next request (``current``)."""
    member.disabled_at = member.disabled_at or utcnow()
    member.enrolment_hash = None


def by_enrolment_token(session: Session, token: str) -> StaffMember | None:
    if not token or len(token) > 100:
        return None
    member = session.scalar(select(StaffMember).where(
        StaffMember.enrolment_hash == secret_digest(token)))
    if member is None or member.disabled_at is not None or member.enrolment_expires_at is None \
            or member.enrolment_expires_at < utcnow():
        return None
    return member


def enrolment_secret(member: StaffMember) -> str:
    """The authenticator seed shown at enrolment; kept encrypted until the officer confirms it."""
    if member.totp_secret_encrypted is None:
        member.totp_secret_encrypted = totp.encrypt_secret(pyotp.random_base32(32), _aad(member))
    return totp.decrypt_secret(member.totp_secret_encrypted, _aad(member))


def _aad(member: StaffMember) -> str:
    return f"staff:{member.id}"


def provisioning_uri(member: StaffMember) -> str:
    return pyotp.TOTP(enrolment_secret(member)).provisioning_uri(
        name=member.email, issuer_name="SatuID Helpdesk")


def check_code(member: StaffMember, typed: str) -> bool:
    """A code from the officer's app, each step accepted once (the last one used is kept)."""
    code = digits(typed)
    if len(code) != 6 or member.totp_secret_encrypted is None:
        return False
    otp = pyotp.TOTP(totp.decrypt_secret(member.totp_secret_encrypted, _aad(member)))
    current = int(time.time() // totp.STEP)
    for step in range(current - totp.VALID_WINDOW, current + totp.VALID_WINDOW + 1):
        if hmac.compare_digest(otp.at(step * totp.STEP), code):
            # Claim the step in one statement: two requests with the same code cannot both pass.
            claimed = get_session().execute(update(StaffMember).where(
                StaffMember.id == member.id,
                or_(StaffMember.totp_last_step.is_(None), StaffMember.totp_last_step < step))
                .values(totp_last_step=step))
            return rowcount(claimed) == 1
    return False


def finish_enrolment(member: StaffMember, password: str) -> None:
    member.password_hash = passwords.hash_password(password)
    member.enrolled_at = utcnow()
    member.enrolment_hash = None
    member.enrolment_expires_at = None


def check_password(member: StaffMember | None, password: str) -> bool:
    """Equal work whether or not the officer exists (no telling which addresses are staff)."""
    if member is None or member.password_hash is None or not member.active:
        passwords.burn_time()
        return False
    return passwords.verify_password(member.password_hash, password)


# ---- the session ---------------------------------------------------------------------------------

def start(member: StaffMember, *, verified: bool) -> None:
    """A new session (password checked; ``verified`` once the code was too): a fresh cookie."""
    end()
    secret = secrets.token_urlsafe(32)
    state.staff_sessions.put(StaffSession(staff_id=str(member.id), role=member.role,
                                          created_at=int(clock.time()), verified=verified),
                             secret_digest(secret))
    setattr(g, _COOKIE, secret)


def verified(member: StaffMember) -> None:
    """The code was given: a new cookie again, so a cookie seen before the code is worth nothing."""
    start(member, verified=True)


def _cookie_key() -> str | None:
    secret = getattr(g, _COOKIE, None) or request.cookies.get(cookie_name())
    return secret_digest(secret) if secret else None


def pending() -> StaffMember | None:
    """The officer who gave the password and not yet the code."""
    return _load(want_verified=False)


def current() -> StaffMember | None:
    """The signed-in officer of this request (level 2), or None. Every call slides the idle expiry."""
    if _CURRENT in g.__dict__:
        member: StaffMember | None = g.__dict__[_CURRENT]
        return member
    member = _load(want_verified=True)
    g.__dict__[_CURRENT] = member
    return member


def _load(*, want_verified: bool) -> StaffMember | None:
    key = _cookie_key()
    if key is None:
        return None
    record = state.staff_sessions.get(key)
    if record is None or record.verified != want_verified:
        return None
    if clock.time() - record.created_at > MAX_SESSION_SECONDS:
        state.staff_sessions.delete(key)
        return None
    member = get_session().get(StaffMember, uuid.UUID(record.staff_id))
    if member is None or not member.active or member.role != record.role:
        state.staff_sessions.delete(key)
        return None
    state.staff_sessions.put(record, key)  # idle expiry starts again
    return member


def end() -> None:
    key = _cookie_key()
    if key is not None:
        state.staff_sessions.delete(key)
    setattr(g, _COOKIE, "")
    g.__dict__.pop(_CURRENT, None)


def write_cookie(response: Response) -> Response:
    """After each helpdesk request: set or clear the staff cookie (path /helpdesk only)."""
    secret = getattr(g, _COOKIE, None)
    if secret is None:
        return response
    secure = _settings().secure_cookies
    path = "/" if secure else "/helpdesk"  # the __Host- prefix requires Path=/
    if secret:
        response.set_cookie(cookie_name(), secret, httponly=True, secure=secure, samesite="Strict",
                            path=path)
    else:
        response.delete_cookie(cookie_name(), path=path, secure=secure, httponly=True,
                               samesite="Strict")
    return response


def staff_required(*roles: str) -> Callable[[F], F]:
    """Pages for signed-in officers of these roles (any role when none is named)."""

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            member = current()
            if member is None:
                return redirect(url_for("helpdesk.login", next=request.path))
            if roles and member.role not in roles:
                return _forbidden()
            return view(*args, **kwargs)

        return cast(F, wrapped)

    return decorator


def _forbidden() -> Any:
    from flask import render_template
    from flask_babel import gettext as _

    return render_template("error.html", title=_("Not allowed"),
                           message=_("Your role does not allow this.")), 403
