"""The catalogue of short-lived state: every kind of record SatuID keeps in the store, in one place.

Each entry names its key shape, its lifetime and the type of its value (a dataclass), the way
node-oidc-provider has one adapter model per kind. Nothing else builds store keys: modules call the
entries' small functions (``put``, ``get``, ``take``, ``delete``, ``incr``, ``add``...). Values are
written as JSON objects; fields a newer release added are ignored when read, so workers of two
releases can share the store during a rolling deploy.

Keys never hold a NIK, an address or a secret in clear: callers pass digests (``digest``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from flask import current_app

from idp.config import Settings
from idp.store import Store, get_store

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

V = TypeVar("V", bound="DataclassInstance")

#: A lifetime in seconds, or a function of the settings (read when the record is written).
Lifetime = int | Callable[[Settings], int]


def digest(value: str) -> str:
    """A short keyed hash of a personal value (a NIK, an address) for use inside a key: keyed, since
    the NIKs are few enough to hash them all, and a store dump must not tell whose they are."""
    key = current_app.config["IDP"].secret_key.encode()
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:32]


def _seconds(lifetime: Lifetime) -> int:
    if isinstance(lifetime, int):
        return lifetime
    return lifetime(current_app.config["IDP"])


class _Kind:
    def __init__(self, prefix: str, ttl: Lifetime, *, hash_tag: bool = False) -> None:
        self.prefix = prefix
        self.ttl = ttl
        self.hash_tag = hash_tag

    def key(self, *parts: str) -> str:
        """``prefix:part:part``; with ``hash_tag``, ``prefix:{part:part}``: Redis Cluster hashes only
        what stands between a key's first ``{`` and the next ``}`` (cluster specification, "Hash
        tags"), so the records of one group with the same parts share a slot, hence a node."""
        if self.hash_tag:
            return f"{self.prefix}:{{{':'.join(parts)}}}"
        return ":".join((self.prefix, *parts))

    @property
    def store(self) -> Store:
        return get_store()

    def lifetime(self, ttl: int | None) -> int:
        return _seconds(self.ttl) if ttl is None else ttl

    def delete(self, *parts: str) -> None:
        self.store.delete(self.key(*parts))

    def remaining(self, *parts: str) -> int:
        """Seconds before the record expires; 0 when there is none."""
        return self.store.ttl(self.key(*parts))


class Record(_Kind, Generic[V]):
    """Records of one dataclass type under ``prefix:<parts>``."""

    def __init__(self, prefix: str, value: type[V], ttl: Lifetime, *, hash_tag: bool = False) -> None:
        super().__init__(prefix, ttl, hash_tag=hash_tag)
        self.value = value
        fields = dataclasses.fields(value)
        self._fields = {f.name for f in fields if not f.metadata.get("transient")}

    def encode(self, value: V) -> dict[str, Any]:
        data = dataclasses.asdict(value)
        return {k: v for k, v in data.items() if k in self._fields}

    def decode(self, data: dict[str, Any] | None) -> V | None:
        """The record, or None when there is none or it lacks a field (written in an older shape,
        or damaged): a record that cannot be read is treated as gone, never as an error."""
        if data is None:
            return None
        try:
            return self.value(**{k: v for k, v in data.items() if k in self._fields})
        except TypeError:
            return None

    def put(self, value: V, *parts: str, ttl: int | None = None) -> None:
        self.store.put(self.key(*parts), self.encode(value), self.lifetime(ttl))

    def put_if_absent(self, value: V, *parts: str, ttl: int | None = None) -> bool:
        return self.store.put_if_absent(self.key(*parts), self.encode(value), self.lifetime(ttl))

    def get(self, *parts: str) -> V | None:
        return self.decode(self.store.get(self.key(*parts)))

    def take(self, *parts: str) -> V | None:
        """Return and delete at once: of two concurrent callers only one gets the record."""
        return self.decode(self.store.take(self.key(*parts)))


class Counter(_Kind):
    """A number that starts at 1 and expires ``ttl`` seconds after its first increment."""

    def incr(self, *parts: str, ttl: int | None = None) -> int:
        return self.store.incr(self.key(*parts), self.lifetime(ttl))


class MemberSet(_Kind):
    """A set of strings whose expiry is pushed out by every addition."""

    def add(self, member: str, *parts: str, ttl: int | None = None) -> None:
        self.store.add_member(self.key(*parts), member, self.lifetime(ttl))

    def discard(self, member: str, *parts: str) -> None:
        self.store.remove_member(self.key(*parts), member)

    def members(self, *parts: str) -> set[str]:
        return self.store.members(self.key(*parts))


def _together(kinds: tuple[_Kind, ...]) -> None:
    # One command may touch one slot only on a Redis Cluster: the kinds must share the tag.
    if not all(kind.hash_tag for kind in kinds):
        raise ValueError("only kinds with hash_tag=True are read or deleted together")


def delete_together(kinds: tuple[_Kind, ...], *parts: str) -> None:
    """Delete the records of ``kinds`` under the same ``parts`` with one command (a TOGETHER group,
    below: the keys share a slot)."""
    _together(kinds)
    get_store().delete(*(kind.key(*parts) for kind in kinds))


def remaining_together(kinds: tuple[_Kind, ...], *parts: str) -> list[int]:
    """``remaining`` of each of ``kinds`` under the same ``parts``, in one round trip."""
    _together(kinds)
    return get_store().ttls(*(kind.key(*parts) for kind in kinds))


# ---- value types ---------------------------------------------------------------------------------

@dataclass
class Stamp:
    """A marker whose presence is the fact (a lockout, a used TOTP step); ``at`` is when it was set."""

    at: int = 0


@dataclass
class Interaction:
    """An authorization request waiting for the citizen at a page (login, second factor, consent).

    The page reports its outcome in ``result`` (``interaction.finish``); ``/authorize`` reads it.
    """

    uid: str
    resume: str                      # local path that continues the authorization
    client_id: str = ""
    client_name: str = ""
    prompt: str = "login"            # "login", "mfa" or "consent"
    login_hint: str = ""
    ui_locales: str = ""
    required_acr: int = 1            # level of assurance the portal needs (1, 2, 3)
    allowed_factors: list[str] = field(default_factory=list)  # empty: any second factor
    details: dict[str, Any] = field(default_factory=dict)     # what the page shows (scopes...)
    result: dict[str, Any] = field(default_factory=dict)      # what the page decided


@dataclass
class PendingAuthorization:
    """An authorization request kept while the citizen is at a page (``authz:<rid>``)."""

    params: dict[str, str]
    # The SSO session as the request found it (sid, auth_event): an authentication during this
    # request shows as a change, which satisfies prompt=login and max_age.
    before: dict[str, str] | None = None


@dataclass
class PushedRequest:
    """RFC 9126: the parameters a client pushed, for its ``request_uri``."""

    client_id: str
    params: dict[str, str]


@dataclass
class LogoutRequest:
    """RP-initiated logout parameters kept while the citizen confirms."""

    params: dict[str, str]


@dataclass
class IssuedCode:
    """An authorization code's data: the request it answers and the authentication behind it."""

    grant_id: str
    client_id: str
    citizen_id: str
    redirect_uri: str
    scope: str
    nonce: str | None
    code_challenge: str
    code_challenge_method: str
    auth_time: int
    acr: int
    amr: list[str]
    sid: str
    claims_request: dict[str, Any] = field(default_factory=dict)


@dataclass
class CodeGrant:
    """The grant a code belongs to, kept from the code's issue for as long as its tokens can live:
    a code its own client presents when it is no longer there (spent, or replayed while being
    spent) revokes it."""

    grant_id: str
    client_id: str = ""


@dataclass
class SsoSession:
    sid: str
    citizen_id: str
    auth_time: int                    # when the citizen last proved who they are (OIDC auth_time)
    amr: list[str]                    # RFC 8176 methods used, e.g. ["pwd", "otp"]
    acr: int                          # level of assurance reached: 1, 2 or 3
    created_at: int
    last_seen: int
    factor_times: dict[str, int] = field(default_factory=dict)  # amr value -> when it was used
    user_agent: str = ""              # shown to the citizen on their sessions page
    ip: str = ""
    # Changes with every login, re-authentication and step-up: a request can tell the citizen
    # proved something after it arrived even within the same second of auth_time.
    auth_event: str = ""
    # The store key (hash of the cookie secret); known from the cookie, never stored.
    key: str = field(default="", metadata={"transient": True})

    @property
    def age(self) -> int:
        """Seconds since the citizen last proved who they are."""
        return int(time.time()) - self.auth_time


@dataclass
class SessionRef:
    """``sso-sid:<sid>``: where the session with this public id is stored now."""

    key: str

    def __post_init__(self) -> None:
        # The previous release stored the whole store key ("sso:<hash>"); read it as the hash.
        self.key = self.key.removeprefix("sso:")


@dataclass
class Registration:
    """The registration wizard's state; the browser holds only its random token."""

    nik: str
    full_name: str
    interaction: str = ""
    channel: str = ""                 # "email" or "sms"
    contact: str = ""
    verified: bool = False
    existing: str = ""                # the citizen id when the NIK already has an account


@dataclass
class PendingCode:
    """A one-time code that was sent: its HMAC, the wrong tries so far, where it went."""

    digest: str
    recipient: str
    expires_at: float
    attempts: int = 0


@dataclass
class LinkSubject:
    """What a one-time link (password reset) is for."""

    subject: str


@dataclass
class ClientKeySet:
    """A portal's public keys as fetched from its ``jwks_uri``."""

    uri: str
    keys: list[dict[str, Any]]


@dataclass
class WebauthnChallenge:
    challenge: str
    citizen_id: str


# ---- the catalogue -------------------------------------------------------------------------------

def _absolute(s: Settings) -> int:
    return s.session_absolute_seconds


def _lockout(s: Settings) -> int:
    return s.login_lockout_seconds


def _code_lifetime(_s: Settings) -> int:
    return int(current_app.config.get("OIDC_CODE_LIFETIME", 60))


def _refresh(s: Settings) -> int:
    return s.refresh_token_lifetime


INTERACTION_TTL = 30 * 60  # long enough to register an account in the middle of a login

# On a Redis Cluster every key lives in one of 16384 hash slots, and one command, MULTI/EXEC or
# script may touch the keys of one slot only. Every store call today touches a single key, so any
# key may live anywhere. The groups marked TOGETHER below are kept in one slot all the same
# (``hash_tag=True``: the parts, the subject they share, are the tag): they are read and written
# together in one decision: a throttle's lock and wait are read in one round trip
# (``remaining_together``) and its failures, wait and lock ended by one DEL (``delete_together``).
# A new multi-key operation must stay inside one such group.
#
# Kept apart on purpose, each in its old shape:
#   - an SSO session (``sso``, by the cookie's hash) and its ``sso-sid``/``sso-rps`` (by sid) and
#     ``sso-of`` (by citizen) are reached by three different identifiers, so no one tag can hold
#     them; and a new ``sso-sid`` shape would make every session of the previous release look
#     replaced (``idp.auth.session.load``), logging every citizen out during a rolling deploy;
#   - a code and its ``code-grant`` (both sha256(code)) are read one after the other, never in one
#     command; a new shape would turn down every code issued by the other release during a rolling
#     deploy.
#
# Rolling deploy: the TOGETHER groups took their tagged shape ("fail:{<digest>}", was
# "fail:<digest>") in the release that added Redis Cluster. While both releases run, each counts
# failures and keeps locks apart, and the new one does not see a lock or a count from before it:
# a throttle starts again once, nothing else is lost. The old keys expire by themselves (within a
# day, the longest of these lifetimes).

# Protocol (idp.oidc)
interactions = Record("interaction", Interaction, INTERACTION_TTL)                  # uid
pending_authorizations = Record("authz", PendingAuthorization, INTERACTION_TTL)    # rid
pushed_requests = Record("par", PushedRequest, 90)                                 # handle (§2.2)
logout_requests = Record("end-session", LogoutRequest, 600)                        # handle
codes = Record("code", IssuedCode, _code_lifetime)                                 # sha256(code)
code_grants = Record("code-grant", CodeGrant, _refresh)                            # sha256(code)
client_assertions = Record("client-jti", Stamp, 3660)                              # sha256(sub, jti)
request_objects = Record("request-object", Stamp, 3660)                            # sha256(client, jti)
client_key_sets = Record("client-jwks", ClientKeySet, 300)                         # client id
refresh_retries = Record("refresh-retry", Stamp, 60)                               # token row id

# SSO sessions (idp.auth.session)
sessions = Record("sso", SsoSession, _absolute)                                    # sha256(cookie)
session_refs = Record("sso-sid", SessionRef, _absolute)                            # sid
sessions_of_citizen = MemberSet("sso-of", _absolute)                               # citizen id
portals_of_session = MemberSet("sso-rps", _absolute)                               # sid

# Throttling (idp.auth.lockout): keyed on digest(NIK), registered or not. TOGETHER, per guard: a
# guard's failures, wait and lock for one subject (idp.auth.lockout.Guard).
login_failures = Counter("fail", 3600, hash_tag=True)
login_waits = Record("wait", Stamp, 60, hash_tag=True)
login_locks = Record("lock", Stamp, _lockout, hash_tag=True)
factor_failures = Counter("mfa-fail", 24 * 3600, hash_tag=True)                    # citizen id
factor_waits = Record("mfa-wait", Stamp, 60, hash_tag=True)                        # citizen id
factor_locks = Record("mfa-lock", Stamp, _lockout, hash_tag=True)                  # citizen id
enrolment_failures = Counter("enrol-fail", 3600, hash_tag=True)                    # citizen id
enrolment_waits = Record("enrol-wait", Stamp, 60, hash_tag=True)                   # citizen id
enrolment_locks = Record("enrol-lock", Stamp, _lockout, hash_tag=True)             # citizen id
network_attempts = Counter("ip", 61)                                               # bucket, ip, minute

# Registration (idp.registration). TOGETHER: the failures and the lock of one NIK.
registrations = Record("register", Registration, 30 * 60)                          # token
registration_failures = Counter("register-fail", 3600, hash_tag=True)              # digest(NIK)
registration_locks = Record("register-lock", Stamp, 3600, hash_tag=True)           # digest(NIK)
registration_again_notices = Record("register-again-notice", Stamp, 24 * 3600)     # citizen id

# One-time codes and links (idp.codes)
one_time_codes = Record("otc", PendingCode, 600)                                   # purpose, subject
one_time_links = Record("otl", LinkSubject, 900)                                   # purpose, sha256
code_sends = Counter("otc-sends", 3600)                                            # group, subject
code_sends_to = Counter("otc-sends-to", 3600)                                      # group, digest
code_sends_from = Counter("otc-sends-ip", 3600)                                    # group, ip

# Second factors (idp.auth.mfa)
totp_steps_used = Record("totp-used", Stamp, 120)                                  # citizen, step
passkey_registrations = Record("webauthn-reg", WebauthnChallenge, 5 * 60)          # ceremony
passkey_assertions = Record("webauthn-auth", WebauthnChallenge, 5 * 60)            # ceremony

# Helpdesk (idp.helpdesk)
@dataclass
class StaffSession:
    """A helpdesk officer's session: its own cookie, never a citizen's. ``verified`` once the
    authenticator code was given after the password (level 2)."""

    staff_id: str
    role: str
    created_at: int
    verified: bool = False


def _staff_idle(s: Settings) -> int:
    return s.staff_idle_seconds


staff_sessions = Record("staff-session", StaffSession, _staff_idle)               # sha256(cookie)
# TOGETHER: an officer's lookups of one day and the supervisors' alert about them.
staff_lookups = Counter("staff-lookups", 24 * 3600, hash_tag=True)                 # staff id, day
staff_lookup_alerts = Record("staff-lookup-alert", Stamp, 24 * 3600, hash_tag=True)  # staff id, day
# TOGETHER: the helpdesk sign-in guard's failures, wait and lock (idp.auth.lockout.STAFF).
staff_failures = Counter("staff-fail", 3600, hash_tag=True)                        # digest(email)
staff_waits = Record("staff-wait", Stamp, 60, hash_tag=True)                       # digest(email)
staff_locks = Record("staff-lock", Stamp, _lockout, hash_tag=True)                 # digest(email)

# Per-worker caches (idp.cache)
@dataclass
class Generation:
    """The caches' generation mark: any change of it, or its absence, empties every worker's caches."""

    v: str


cache_generation = Record("cache", Generation, 10 * 365 * 24 * 3600)              # "generation"
