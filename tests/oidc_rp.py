"""A minimal relying party driving the Flask test client through the real pages (integration tests).

It builds authorization requests with PKCE S256, follows the login and consent pages like a browser
would, and exchanges codes at the token endpoint.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import csrf_token


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def register_portal(app: Flask, client_id: str = "portal-test", **fields: Any) -> dict[str, Any]:
    from idp.db import get_session
    from idp.oidc import clients

    values: dict[str, Any] = dict(
        name=f"Portal {client_id}", redirect_uris=[f"https://{client_id}.example.id/cb"],
        post_logout_redirect_uris=[f"https://{client_id}.example.id/"],
        scopes=["openid", "profile", "email", "phone", "address", "offline_access"],
        purpose="Testing the portal.",
    )
    values.update(fields)
    with app.app_context():
        session = get_session()
        _client, secret = clients.register(session, client_id=client_id, **values)
        session.commit()
        return {"client_id": client_id, "secret": secret, "redirect_uri": values["redirect_uris"][0],
                "post_logout": values["post_logout_redirect_uris"]}


def query(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


@dataclass
class Portal:
    """One portal's view of the IdP through a browser (the test client)."""

    browser: FlaskClient
    client_id: str
    secret: str | None
    redirect_uri: str
    last: dict[str, str] = field(default_factory=dict)

    def authorize_url(self, scope: str = "openid profile", **extra: str) -> str:
        verifier, challenge = pkce_pair()
        params = {"response_type": "code", "client_id": self.client_id, "redirect_uri": self.redirect_uri,
                  "scope": scope, "state": secrets.token_urlsafe(8), "nonce": secrets.token_urlsafe(8),
                  "code_challenge": challenge, "code_challenge_method": "S256"}
        params.update(extra)
        params = {k: v for k, v in params.items() if v is not None}
        self.last = {"verifier": verifier, **params}
        return "/authorize?" + urlencode(params)

    def follow(self, response: Any, nik: str | None = None, password: str | None = None,
               consent: str = "approve", limit: int = 10) -> str:
        """Follow redirects through login and consent pages until the portal's redirect_uri."""
        for _ in range(limit):
            assert response.status_code in (302, 303), (response.status_code, response.get_data(True)[:500])
            location = response.headers["Location"]
            if location.startswith(self.redirect_uri):
                return location
            path = location.replace("http://localhost", "")
            if path.startswith("/login"):
                assert nik and password, "login needed but no credentials given"
                uid = query(path)["interaction"]
                page = self.browser.get(path)
                response = self.browser.post("/login", data={
                    "csrf_token": csrf_token(page.get_data(as_text=True)), "nik": nik,
                    "password": password, "interaction": uid, "next": ""})
            elif path.startswith("/consent"):
                page = self.browser.get(path)
                assert page.status_code == 200, page.get_data(True)[:300]
                response = self.browser.post("/consent", data={
                    "csrf_token": csrf_token(page.get_data(as_text=True)),
                    "interaction": query(path)["interaction"], "decision": consent})
            else:
                response = self.browser.get(path)
        raise AssertionError("too many redirects")

    def sign_in(self, nik: str | None = None, password: str | None = None, scope: str = "openid profile",
                consent: str = "approve", **extra: str) -> dict[str, str]:
        response = self.browser.get(self.authorize_url(scope, **extra))
        return query(self.follow(response, nik, password, consent))

    def token(self, code: str, verifier: str | None = None, **overrides: Any) -> Any:
        data = {"grant_type": "authorization_code", "code": code, "redirect_uri": self.redirect_uri,
                "code_verifier": verifier if verifier is not None else self.last["verifier"]}
        data.update(overrides)
        data = {k: v for k, v in data.items() if v is not None}
        return self.post("/token", data)

    def post(self, path: str, data: dict[str, Any]) -> Any:
        auth = (self.client_id, self.secret) if self.secret else None
        if auth is None:
            data = {"client_id": self.client_id, **data}
        return self.browser.post(path, data=data, auth=auth)

    def refresh(self, refresh_token: str) -> Any:
        return self.post("/token", {"grant_type": "refresh_token", "refresh_token": refresh_token})
