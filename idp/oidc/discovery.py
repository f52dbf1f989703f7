"""Provider metadata (OIDC Discovery 1.0 §3, RFC 8414, RFC 9207, RFC 9126, Back-Channel Logout §2.1)."""

from __future__ import annotations

from typing import Any

from flask import current_app

from idp.auth.loa import ACR_VALUES
from idp.identity import verification
from idp.oidc.claims import SUPPORTED_CLAIMS, SUPPORTED_SCOPES, VERIFIED_CLAIM_SCOPE
from idp.oidc.clients import ASSERTION_ALGORITHMS, AUTH_METHODS


def provider_metadata() -> dict[str, Any]:
    issuer = current_app.config["IDP"].issuer
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/authorize",
        "token_endpoint": f"{issuer}/token",
        "userinfo_endpoint": f"{issuer}/userinfo",
        "jwks_uri": f"{issuer}/jwks",
        "revocation_endpoint": f"{issuer}/revoke",
        "introspection_endpoint": f"{issuer}/introspect",
        "pushed_authorization_request_endpoint": f"{issuer}/par",
        "end_session_endpoint": f"{issuer}/end-session",
        "scopes_supported": list(SUPPORTED_SCOPES),
        "claims_supported": list(SUPPORTED_CLAIMS),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
        "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "token_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGORITHMS),
        "revocation_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "introspection_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "code_challenge_methods_supported": ["S256"],
        "prompt_values_supported": ["none", "login", "consent"],
        "acr_values_supported": list(ACR_VALUES.values()),
        "claims_parameter_supported": True,
        # OpenID Connect for Identity Assurance 1.0 §7
        "verified_claims_supported": True,
        "trust_frameworks_supported": [verification.TRUST_FRAMEWORK],
        "evidence_supported": list(verification.EVIDENCE_TYPES),
        "documents_supported": ["idcard"],              # the KTP-el, checked at a counter
        "documents_methods_supported": ["pipp"],        # physical in-person proofing
        "documents_check_methods_supported": ["vpip"],  # visual inspection, in person
        "claims_in_verified_claims_supported": list(VERIFIED_CLAIM_SCOPE),
        "request_parameter_supported": True,
        "request_object_signing_alg_values_supported": list(ASSERTION_ALGORITHMS),
        "request_uri_parameter_supported": False,
        "require_pushed_authorization_requests": False,
        "authorization_response_iss_parameter_supported": True,
        "backchannel_logout_supported": True,
        "backchannel_logout_session_supported": True,
        "ui_locales_supported": ["id", "en"],
        "claims_locales_supported": ["id", "en"],
    }
