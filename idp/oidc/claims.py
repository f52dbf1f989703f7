"""Scopes, claims and the ``claims`` request parameter (OIDC Core §5.4, §5.5).

Values come from the population registry (name, birth date, sex, address) and the SatuID account
(email, phone, locale). The NIK is a claim of its own, under the ``nik`` scope, for portals that are
allowed it. Scope claims are returned from userinfo; the ID token carries only what the ``claims``
parameter asks for in ``id_token`` (§5.4: scope claims go to userinfo when an access token is issued).
"""

from __future__ import annotations

import json
import math
from typing import Any

from sqlalchemy.orm import Session

from idp.identity import verification
from idp.models import Citizen, Resident

SCOPE_CLAIMS: dict[str, tuple[str, ...]] = {
    "profile": ("name", "birthdate", "gender", "locale"),
    "email": ("email", "email_verified"),
    "phone": ("phone_number", "phone_number_verified"),
    "address": ("address",),
    "nik": ("nik",),
}
SUPPORTED_SCOPES = ("openid", "offline_access", *SCOPE_CLAIMS)
CLAIM_SCOPE = {claim: scope for scope, claims in SCOPE_CLAIMS.items() for claim in claims}
# Claims about the authentication itself, always allowed in the claims parameter.
AUTH_CLAIMS = ("sub", "auth_time", "acr", "amr", "sid", "nonce")
#: OpenID Connect for Identity Assurance 1.0: claims the registry vouches for, asked for inside
#: ``verified_claims`` and released only with the scope that releases them plainly.
VERIFIED_CLAIM_SCOPE = {"name": "profile", "birthdate": "profile", "gender": "profile",
                        "place_of_birth": "profile", "address": "address", "nik": "nik"}
SUPPORTED_CLAIMS = ("iss", "aud", "exp", "iat", *AUTH_CLAIMS, *CLAIM_SCOPE, "place_of_birth",
                    "verified_claims")


class InvalidClaimsRequest(ValueError):
    """The ``claims`` parameter is not a JSON object of the form §5.5 describes."""


MAX_CLAIMS_PARAMETER = 4096  # bytes; a real request names a few dozen claims at most
MAX_DEPTH = 6  # claims → id_token → claim → values → a value (5), and a level to spare


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")  # NaN and Infinity are not JSON (RFC 8259 §6)


def _depth(value: Any) -> int:
    """Nesting depth of a parsed JSON value, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, level + 1) for child in children)
    return deepest


def parse_claims_request(raw: str | None) -> dict[str, dict[str, Any]]:
    """Parse and check the ``claims`` parameter; every member has the shape §5.5.1 gives."""
    if not raw:
        return {}
    if len(raw) > MAX_CLAIMS_PARAMETER:
        raise InvalidClaimsRequest("claims is too long")
    try:
        value = json.loads(raw, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as e:
        raise InvalidClaimsRequest("claims is not JSON") from e
    if not isinstance(value, dict):
        raise InvalidClaimsRequest("claims is not a JSON object")
    if _depth(value) > MAX_DEPTH:
        # The request is stored with the code and tokens: nothing deeper than §5.5 needs.
        raise InvalidClaimsRequest("claims is nested too deeply")
    out: dict[str, dict[str, Any]] = {}
    for member in ("id_token", "userinfo"):
        part = value.get(member)
        if part is None:
            continue
        if not isinstance(part, dict) or not all(v is None or isinstance(v, dict) for v in part.values()):
            raise InvalidClaimsRequest(f"claims.{member} is not an object of claim requests")
        for name, request in part.items():
            if request and not _well_formed(request):
                raise InvalidClaimsRequest(f"claims.{member}.{name} is not a valid claim request")
        out[member] = {k: (v or {}) for k, v in part.items()}
    return out


def _well_formed(request: dict[str, Any]) -> bool:
    """§5.5.1: ``essential`` is a boolean, ``value`` a single value, ``values`` an array of them."""
    def scalar(v: Any) -> bool:
        # 1e400 parses to infinity, which PostgreSQL's JSON refuses when the request is stored.
        return isinstance(v, (str, int, bool)) or (isinstance(v, float) and math.isfinite(v))

    if "essential" in request and not isinstance(request["essential"], bool):
        return False
    if "value" in request and not scalar(request["value"]):
        return False
    values = request.get("values")
    return values is None or (isinstance(values, list) and all(scalar(v) for v in values))


def essential_acr(claims_request: dict[str, dict[str, Any]]) -> list[str] | None:
    """``acr`` values asked as essential in the claims parameter (OIDC Core §5.5.1.1)."""
    for member in ("id_token", "userinfo"):
        acr = claims_request.get(member, {}).get("acr")
        if acr and acr.get("essential"):
            values = acr.get("values") or ([acr["value"]] if acr.get("value") else [])
            return [str(v) for v in values]
    return None


def released_claims(scopes: list[str], claims_request: dict[str, dict[str, Any]],
                    member: str) -> list[str]:
    """Names of the identity claims one response (``id_token`` or ``userinfo``) carries.

    Userinfo: the granted scopes' claims, narrowed to those named when ``claims.userinfo`` is given.
    ID token: only those named in ``claims.id_token``. Either way only claims of granted scopes.
    ``verified_claims`` is among them when it was asked for and a claim it names is allowed.
    """
    allowed = {c for s in scopes for c in SCOPE_CLAIMS.get(s, ())}
    asked = claims_request.get(member)
    if member == "userinfo":
        names = allowed if asked is None else {c for c in asked if c in allowed}
    else:
        names = {c for c in (asked or {}) if c in allowed}
    if verified_claim_names(scopes, claims_request, member):
        names.add("verified_claims")
    return sorted(names)


def verified_claim_names(scopes: list[str], claims_request: dict[str, dict[str, Any]],
                         member: str) -> list[str]:
    """The claims asked for inside ``verified_claims`` (IA 1.0 §6) that the granted scopes allow."""
    request = claims_request.get(member, {}).get("verified_claims")
    inner = request.get("claims") if isinstance(request, dict) else None
    if not isinstance(inner, dict):
        return []
    return sorted(c for c in inner if VERIFIED_CLAIM_SCOPE.get(c) in scopes)


def requested_claims(scopes: list[str], claims_request: dict[str, dict[str, Any]]) -> list[str]:
    """Every identity claim this authorization could release: what the consent page lists."""
    return sorted(set(released_claims(scopes, claims_request, "userinfo"))
                  | set(released_claims(scopes, claims_request, "id_token")))


def response_claims(session: Session, citizen: Citizen, scopes: list[str],
                    claims_request: dict[str, dict[str, Any]], member: str) -> dict[str, Any]:
    """Every identity claim one response carries, ``verified_claims`` included (IA 1.0 §5)."""
    names = released_claims(scopes, claims_request, member)
    values = claim_values(session, citizen, names)
    if "verified_claims" in names:
        verified = verification.latest(session, citizen.id)
        if verified is not None:
            inner = verified_claim_names(scopes, claims_request, member)
            values["verified_claims"] = {
                "verification": verification.verification_element(verified),
                "claims": claim_values(session, citizen, inner)}
    return values


def claim_values(session: Session, citizen: Citizen, names: list[str]) -> dict[str, Any]:
    """Values of the named claims for a citizen, from the registry and the account."""
    resident = session.get(Resident, citizen.nik) if names else None
    values: dict[str, Any] = {}
    for name in names:
        if name == "place_of_birth" and resident:
            values[name] = {"locality": resident.birth_place, "country": "ID"}
        elif name == "name":
            values[name] = citizen.full_name
        elif name == "birthdate" and resident:
            values[name] = resident.birth_date.isoformat()
        elif name == "gender" and resident:
            values[name] = "female" if resident.sex == "F" else "male"
        elif name == "locale":
            values[name] = citizen.locale
        elif name == "email" and citizen.email:
            values[name] = citizen.email
        elif name == "email_verified" and citizen.email:
            values[name] = bool(citizen.email_verified)
        elif name == "phone_number" and citizen.phone:
            values[name] = citizen.phone
        elif name == "phone_number_verified" and citizen.phone:
            values[name] = bool(citizen.phone_verified)
        elif name == "address" and resident:
            values[name] = {
                "formatted": ", ".join([resident.street_address, resident.village, resident.district,
                                        resident.regency, resident.province, resident.postal_code]),
                "street_address": resident.street_address,
                "locality": resident.regency,
                "region": resident.province,
                "postal_code": resident.postal_code,
                "country": "ID",
            }
        elif name == "nik":
            values[name] = citizen.nik
    return values
