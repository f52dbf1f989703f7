"""Hostile and random requests for every protocol endpoint and every form (the property test and
``bench/fuzz.py`` share them).

A request is an endpoint, its parameters (valid ones, so that the handlers get past their first
check, with one or more replaced by hostile or random values, sometimes repeated) and a method.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

CLIENT_ID = "portal-fuzz"
REDIRECT_URI = "https://portal-fuzz.example.id/cb"

#: Values that broke identity providers before: NUL, quotes and backslashes that end up in error
#: descriptions, non-ASCII digits and emoji, huge and deeply nested values, number edge cases.
HOSTILE = [
    "\x00", "a\x00b", "\u0000", "😀", "١٢٣٤٥٦", "１２３４５６", "\"", "\\", "'\"<>&", "%00", "%",
    "é\"\\", "\r\n", "\t", " ", "", "-1", "0", "1e400", "NaN", "Infinity", "99999999999999999999",
    "null", "[]", "{}", '{"id_token":{"acr":{"essential":true,"values":["x"]}}}',
    '{"userinfo":' * 50, "x" * 5000, "../../etc/passwd", "//evil.example/", "javascript:alert(1)",
    "https://evil.example/cb", "urn:ietf:params:oauth:request_uri:" + "A" * 300,
    "\ud7ff", "\ufeff", "\u202e", "ＡＢＣ",
]

BASE_AUTHORIZE = {
    "response_type": "code", "client_id": CLIENT_ID, "redirect_uri": REDIRECT_URI,
    "scope": "openid profile", "state": "s", "nonce": "n",
    "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", "code_challenge_method": "S256",
}

ENDPOINTS: list[tuple[str, str, dict[str, str]]] = [
    ("GET", "/authorize", BASE_AUTHORIZE),
    ("POST", "/authorize", BASE_AUTHORIZE),
    ("POST", "/par", {**BASE_AUTHORIZE, "client_secret": "fuzz-secret"}),
    ("POST", "/token", {"grant_type": "authorization_code", "code": "c", "redirect_uri": REDIRECT_URI,
                        "code_verifier": "v" * 43, "client_id": CLIENT_ID, "client_secret": "fuzz-secret"}),
    ("POST", "/token", {"grant_type": "refresh_token", "refresh_token": "r", "client_id": CLIENT_ID,
                        "client_secret": "fuzz-secret"}),
    ("POST", "/introspect", {"token": "t", "client_id": CLIENT_ID, "client_secret": "fuzz-secret"}),
    ("POST", "/revoke", {"token": "t", "token_type_hint": "refresh_token", "client_id": CLIENT_ID,
                         "client_secret": "fuzz-secret"}),
    ("GET", "/userinfo", {"access_token": "a.b.c"}),
    ("POST", "/userinfo", {"access_token": "a.b.c"}),
    ("GET", "/end-session", {"client_id": CLIENT_ID, "post_logout_redirect_uri": REDIRECT_URI,
                             "id_token_hint": "a.b.c", "state": "s"}),
    ("POST", "/end-session/confirm", {"handle": "h", "decision": "logout"}),
    ("GET", "/authorize/resume/abc", {"interaction": "i"}),
    ("GET", "/login", {"interaction": "i", "next": "/account"}),
    ("POST", "/login", {"nik": "3171065708900001", "password": "x" * 12, "interaction": "", "next": ""}),
    ("POST", "/password/forgot", {"nik": "3171065708900001"}),
    ("GET", "/password/reset/token", {}),
    ("POST", "/password/reset/token", {"password": "x" * 12, "confirm": "x" * 12}),
    ("POST", "/register", {"nik": "3171065708900001", "full_name": "Siti", "birth_date": "1990-08-17"}),
    ("POST", "/register/contact", {"email": "a@example.id", "phone": ""}),
    ("POST", "/register/verify", {"code": "123456", "action": "verify"}),
    ("POST", "/register/password", {"password": "x" * 12, "confirm": "x" * 12}),
    ("GET", "/consent", {"interaction": "i"}),
    ("POST", "/consent", {"interaction": "i", "decision": "approve"}),
    ("GET", "/login/step-up", {"interaction": "i", "factor": "totp"}),
    ("POST", "/login/step-up", {"interaction": "i", "factor": "totp", "code": "123456"}),
    ("POST", "/login/step-up/send", {"factor": "email", "next": "/account"}),
    ("POST", "/login/step-up/passkey/verify", {}),
    ("GET", "/jwks", {}),
    ("GET", "/.well-known/openid-configuration", {}),
    ("GET", "/dev/outbox", {"to": "a@example.id"}),
]

#: The forms behind a login (the property test signs a citizen in first).
SIGNED_IN_ENDPOINTS: list[tuple[str, str, dict[str, str]]] = [
    ("POST", "/account/sessions/end", {"sid": "others"}),
    ("GET", "/account/security", {"next": "/account"}),
    ("GET", "/account/security/totp", {"next": "/account"}),
    ("POST", "/account/security/totp", {"code": "123456"}),
    ("POST", "/account/security/totp/remove", {"confirm": "1"}),
    ("POST", "/account/security/passkeys/options", {}),
    ("POST", "/account/security/passkeys", {"name": "kunci"}),
    ("POST", "/account/security/passkeys/abc/rename", {"name": "kunci"}),
    ("POST", "/account/security/passkeys/abc/remove", {"confirm": "1"}),
    ("POST", "/account/security/recovery-codes", {}),
    ("GET", "/account/consents", {}),
    ("POST", f"/account/consents/{CLIENT_ID}/withdraw", {}),
    ("GET", "/account/activity", {}),
    ("POST", "/login/step-up", {"next": "/account", "factor": "email", "code": "123456"}),
    ("POST", "/login/step-up/send", {"next": "/account", "factor": "email"}),
    ("POST", "/login/step-up/cancel", {"next": "/account"}),
    ("POST", "/logout", {}),
]

# Random text from the whole of Unicode (surrogates excluded: they cannot be sent as UTF-8).
_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=200)
values = st.one_of(st.sampled_from(HOSTILE), _text, st.binary(max_size=64).map(
    lambda b: b.decode("latin-1")))


@dataclass
class HostileRequest:
    method: str
    path: str
    params: list[tuple[str, str]]

    def send(self, send: Any) -> Any:
        """Send through ``send(method, path, params)`` (the test client or requests)."""
        return send(self.method, self.path, self.params)


@st.composite
def hostile_requests(draw: st.DrawFn,
                     endpoints: list[tuple[str, str, dict[str, str]]] = ENDPOINTS) -> HostileRequest:
    method, path, base = draw(st.sampled_from(endpoints))
    params = dict(base)
    names = [*sorted(params), "claims", "login_hint", "prompt", "max_age", "acr_values", "request",
             "request_uri", "ui_locales", "response_mode", "client_assertion"]
    for name in draw(st.lists(st.sampled_from(names), min_size=1, max_size=3, unique=True)):
        params[name] = draw(values)
    pairs = list(params.items())
    if draw(st.booleans()) and pairs:  # sometimes a parameter repeated (RFC 6749 §3.1 refuses it)
        pairs.append((pairs[0][0], draw(values)))
    if draw(st.integers(0, 9)) == 0:  # sometimes a hostile parameter name
        pairs.append((draw(values), draw(values)))
    return HostileRequest(method, path, pairs)
