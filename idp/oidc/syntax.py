"""The characters each OAuth parameter may hold (RFC 6749 Appendix A), checked before Authlib runs.

Authlib copies some raw values into an ``error_description`` and then refuses its own description
when the value holds characters §5.2 forbids there (non-ASCII, ``"``, ``\\``), and PostgreSQL refuses
NUL in text. A parameter that breaks its grammar is refused here with a description that names the
parameter only, never its value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_VSCHAR = r"[\x20-\x7e]*"                      # A.1 client_id, A.5 state, A.11 code...
_NQSCHAR = r"[\x20\x21\x23-\x5b\x5d-\x7e]*"    # A.4 scope, and text that may be echoed
_NAME = r"[A-Za-z0-9._~:/?#\[\]@!$&'()*+,;=%-]*"  # A.10 grant_type (name-char or a URI)
_WORDS = r"[A-Za-z0-9_ ]*"                     # A.3 response_type, prompt, response_mode
_URI = r"[\x21\x23-\x5b\x5d-\x7e]*"            # A.6 redirect_uri: a URI has no space, " or \

GRAMMAR = {
    "client_id": _VSCHAR, "client_secret": _VSCHAR, "response_type": _WORDS, "scope": _NQSCHAR,
    "state": _VSCHAR, "redirect_uri": _URI, "error": _NQSCHAR, "grant_type": _NAME,
    "code": _VSCHAR, "refresh_token": _VSCHAR, "code_verifier": r"[A-Za-z0-9._~-]*",
    "code_challenge": r"[A-Za-z0-9._~-]*", "code_challenge_method": _WORDS, "nonce": _VSCHAR,
    "prompt": _WORDS, "response_mode": _WORDS, "max_age": r"[0-9]*", "acr_values": _NQSCHAR,
    "ui_locales": _NQSCHAR, "claims_locales": _NQSCHAR, "display": _WORDS,
    "token": _VSCHAR, "token_type_hint": _NAME, "id_token_hint": _VSCHAR,
    "post_logout_redirect_uri": _URI, "logout_hint": _NQSCHAR, "request_uri": _URI,
    "client_assertion_type": _URI, "client_assertion": _VSCHAR,
}
_COMPILED = {name: re.compile(pattern) for name, pattern in GRAMMAR.items()}
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def first_invalid(params: Mapping[str, str]) -> str | None:
    """The name of the first parameter that breaks its grammar (or holds a control character)."""
    for name, value in params.items():
        pattern = _COMPILED.get(name)
        if pattern is not None and not pattern.fullmatch(value):
            return name
        if _CONTROL.search(value) or _CONTROL.search(name):
            return name if name.isascii() and name.isprintable() else "(a parameter name)"
    return None


def description(name: str) -> str:
    return f"The {name} parameter holds characters it may not hold."
