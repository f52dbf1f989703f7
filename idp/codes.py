"""One-time codes and links: the one place that issues, hashes, counts and expires them.

Used by registration (a code to the new contact), a phone added later (a code to it), the SMS second
factor (a code to the verified phone) and the password reset (a link). An email code is never a
second factor: it only proves an address. A code is six digits; only its HMAC is stored, keyed
by what it is for (``Purpose``) and whom (``subject``: a registration, a citizen). It is good for one
successful use: each check takes it from the store, so two racing guesses get one look, and a wrong
guess puts it back with one try fewer until none are left. Sends are rate-limited per subject, per
recipient and per network address, since every message costs money and can pester someone.

A link carries 256 random bits and is stored under its SHA-256; it is read while the citizen fills
in the page it opens and taken when the page is submitted.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import unicodedata
from dataclasses import dataclass

from flask import current_app, request

from idp import state
from idp.models.base import secret_digest
from idp.state import LinkSubject, PendingCode

CODE_DIGITS = 6
MAX_TOKEN_LENGTH = 64


@dataclass(frozen=True)
class Purpose:
    """What a code is for, and its limits."""

    name: str                       # part of the code's key: one live code per (purpose, subject)
    group: str                      # send counters shared by related purposes
    ttl: int                        # seconds the code stays valid
    attempts: int                   # wrong tries before the code is void
    sends_per_subject: int          # per hour
    sends_per_recipient: int | None = None  # per hour, whoever asks: no flooding someone's phone
    sends_per_network: int | None = None    # per hour per client address


@dataclass(frozen=True)
class LinkPurpose:
    name: str
    ttl: int


REGISTRATION = Purpose("register", "register", ttl=10 * 60, attempts=5, sends_per_subject=4,
                       sends_per_recipient=5)
SECOND_FACTOR_SMS = Purpose("mfa-sms", "mfa", ttl=5 * 60, attempts=5, sends_per_subject=5,
                            sends_per_network=20)
PHONE_VERIFICATION = Purpose("phone", "phone", ttl=10 * 60, attempts=5, sends_per_subject=4,
                             sends_per_recipient=5, sends_per_network=20)
EMAIL_VERIFICATION = Purpose("email", "email", ttl=10 * 60, attempts=5, sends_per_subject=4,
                             sends_per_recipient=5, sends_per_network=20)
PASSWORD_RESET = LinkPurpose("password-reset", ttl=15 * 60)
# Sent to the address or number a citizen replaced: "this was not me" opens a helpdesk case. It
# lives a month, since the owner of an abandoned mailbox may read it late.
CONTACT_NOT_ME = LinkPurpose("contact-not-me", ttl=30 * 24 * 3600)


class SendRefused(Exception):
    """No code was sent: a sending limit was reached."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Check:
    """The outcome of checking a typed code."""

    accepted: bool
    wrong: bool = False             # a code was pending and this is not it
    attempts_left: int = 0          # after a wrong code; 0: the code is void, ask for a new one


def digits(typed: str) -> str:
    """The digits typed, as ASCII: a code read off a phone may come in any script's digits
    (Arabic-Indic ``١٢٣``, Devanagari...) and with spaces or dashes between groups."""
    return "".join(str(unicodedata.decimal(ch)) for ch in typed if unicodedata.decimal(ch, None) is not None)


def _mac(purpose: Purpose, subject: str, code: str) -> str:
    key = current_app.config["IDP"].secret_key.encode()
    return hmac.new(key, f"{purpose.name}:{subject}:{code}".encode(), hashlib.sha256).hexdigest()


def _allowed(purpose: Purpose, subject: str, recipient: str) -> bool:
    if state.code_sends.incr(purpose.group, subject) > purpose.sends_per_subject:
        return False
    if purpose.sends_per_recipient is not None and state.code_sends_to.incr(
            purpose.group, state.digest(recipient)) > purpose.sends_per_recipient:
        return False
    return purpose.sends_per_network is None or state.code_sends_from.incr(
        purpose.group, request.remote_addr or "") <= purpose.sends_per_network


def issue(purpose: Purpose, subject: str, recipient: str) -> str:
    """A fresh code for ``subject`` (earlier ones stop working); the caller sends it to ``recipient``.

    Raises ``SendRefused`` when a sending limit is reached."""
    if not _allowed(purpose, subject, recipient):
        raise SendRefused("rate_limited")
    code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
    pending = PendingCode(digest=_mac(purpose, subject, code), recipient=recipient,
                          expires_at=time.time() + purpose.ttl)
    state.one_time_codes.put(pending, purpose.name, subject, ttl=purpose.ttl)
    return code


def check(purpose: Purpose, subject: str, typed: str, recipient: str | None = None) -> Check:
    """Accept the code once. ``recipient``, when given, must be where the code was sent."""
    code = digits(typed)
    pending = state.one_time_codes.take(purpose.name, subject)
    if pending is None or (recipient is not None and pending.recipient != recipient):
        return Check(accepted=False)
    if len(code) == CODE_DIGITS and hmac.compare_digest(pending.digest, _mac(purpose, subject, code)):
        return Check(accepted=True)
    pending.attempts += 1
    left = purpose.attempts - pending.attempts
    remaining = int(pending.expires_at - time.time())
    if left <= 0 or remaining <= 0:
        return Check(accepted=False, wrong=True)
    state.one_time_codes.put(pending, purpose.name, subject, ttl=remaining)
    return Check(accepted=False, wrong=True, attempts_left=left)


def issue_link(purpose: LinkPurpose, subject: str) -> str:
    """A one-time link token for ``subject``; the caller puts it in a URL and sends it."""
    token = secrets.token_urlsafe(32)
    state.one_time_links.put(LinkSubject(subject), purpose.name, secret_digest(token), ttl=purpose.ttl)
    return token


def link_subject(purpose: LinkPurpose, token: str) -> str | None:
    """Whom a link is for, while it is valid (the page it opens reads it before submission)."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    found = state.one_time_links.get(purpose.name, secret_digest(token))
    return found.subject if found is not None else None


def redeem_link(purpose: LinkPurpose, token: str) -> str | None:
    """Take the link, atomically: a second submission of the same link gets None."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    found = state.one_time_links.take(purpose.name, secret_digest(token))
    return found.subject if found is not None else None
