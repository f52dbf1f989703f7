"""What both example portals share: signing in with SatuID, step-up, both kinds of logout.

A portal is a :class:`PortalConfig` (names, colours, scopes, its own pages as a blueprint) given to
:func:`create_portal`. Everything protocol-related goes through Authlib's Flask OIDC client and the
provider's discovery document, so the same code works with any standard OpenID Provider.
"""

from __future__ import annotations

import functools
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from authlib.integrations.base_client import OAuthError
from authlib.integrations.flask_client import OAuth
from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_wtf.csrf import CSRFProtect
from jinja2 import ChoiceLoader, FileSystemLoader
from joserfc.errors import JoseError
from werkzeug.wrappers import Response

from clients.backchannel import InvalidLogoutToken, verify_logout_token
from clients.sessions import ServerSideSessions, SessionStore

HERE = Path(__file__).resolve().parent
PROVIDER = "satuid"  # the name of the OIDC client registration inside this app


@dataclass(frozen=True)
class PortalConfig:
    """One portal: who it is, what it asks for, and where it runs."""

    name: str                      # "health"; also the session cookie's suffix
    title: str                     # shown in the header, in Indonesian
    title_en: str
    theme: str                     # CSS class that gives the portal its colours
    client_id: str
    client_secret: str
    scopes: str                    # space-separated, "openid" first
    pages: Blueprint               # the portal's own pages, including its sensitive one
    sensitive_endpoint: str        # endpoint of the page that needs a higher level of assurance
    sensitive_label: str
    issuer: str = "http://127.0.0.1:5000"
    base_url: str = "http://127.0.0.1:5001"
    session_db: str = ""           # SQLite file for sessions; "" = instance/clients/<name>.sqlite
    secret_key: str = ""           # signs CSRF tokens; "" = random per process
    # Levels of assurance are values the provider defines (SatuID: urn:satuid:loa:1..3). The sensitive
    # page asks for step_up_acr and accepts any of accepted_acrs in the ID token it gets back.
    step_up_acr: str = "urn:satuid:loa:2"
    accepted_acrs: tuple[str, ...] = ("urn:satuid:loa:2", "urn:satuid:loa:3")
    ui_locales: str = "id"
    extra: dict[str, Any] = field(default_factory=dict)

    def from_environment(self, env: dict[str, str] | None = None) -> PortalConfig:
        """Apply ``SATUID_ISSUER``, ``<NAME>_CLIENT_ID``, ``<NAME>_CLIENT_SECRET``, ``<NAME>_STEP_UP_ACR``."""
        env = dict(os.environ if env is None else env)
        prefix = self.name.upper()
        accepted = env.get(f"{prefix}_ACCEPTED_ACRS")
        return replace(
            self,
            issuer=env.get("SATUID_ISSUER", self.issuer).rstrip("/"),
            client_id=env.get(f"{prefix}_CLIENT_ID", self.client_id),
            client_secret=env.get(f"{prefix}_CLIENT_SECRET", self.client_secret),
            step_up_acr=env.get(f"{prefix}_STEP_UP_ACR", self.step_up_acr),
            accepted_acrs=tuple(accepted.split()) if accepted else self.accepted_acrs,
            secret_key=env.get(f"{prefix}_SECRET_KEY", self.secret_key),
        )


def create_portal(config: PortalConfig) -> Flask:
    """Build the portal's Flask app from its configuration."""
    app = Flask(f"clients.{config.name}", static_folder=str(HERE / "static"),
                static_url_path="/static")
    app.jinja_loader = ChoiceLoader([
        FileSystemLoader(str(HERE / config.name / "templates")),
        FileSystemLoader(str(HERE / "templates")),
    ])
    app.config.update(
        SECRET_KEY=config.secret_key or secrets.token_urlsafe(32),
        # A browser shares cookies between ports of one host: each portal needs its own cookie name.
        SESSION_COOKIE_NAME=f"portal_{config.name}",
        SESSION_COOKIE_SAMESITE="Lax",  # the return from SatuID is a top-level GET: Lax lets it through
        SESSION_COOKIE_SECURE=config.base_url.startswith("https://"),
        WTF_CSRF_TIME_LIMIT=None,
        PREFERRED_URL_SCHEME=urlsplit(config.base_url).scheme,
    )
    store = SessionStore(config.session_db or Path("instance") / "clients" / f"{config.name}.sqlite")
    app.session_interface = ServerSideSessions(store)
    app.extensions["portal"] = config
    app.extensions["portal.sessions"] = store

    oauth = OAuth(app)
    oauth.register(
        PROVIDER,
        client_id=config.client_id,
        client_secret=config.client_secret,
        server_metadata_url=f"{config.issuer}/.well-known/openid-configuration",
        client_kwargs={
            "scope": config.scopes,
            "code_challenge_method": "S256",  # PKCE (RFC 7636); the library makes the verifier
            "token_endpoint_auth_method": "client_secret_basic",
        },
    )
    app.extensions["portal.oauth"] = oauth

    csrf = CSRFProtect(app)
    app.register_blueprint(auth_bp)
    csrf.exempt(backchannel_logout)  # called by SatuID, server to server, with a signed token
    app.register_blueprint(config.pages)

    @app.context_processor
    def _portal_context() -> dict[str, Any]:
        return {"portal": config, "user": current_user()}

    @app.after_request
    def _headers(response: Response) -> Response:
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; style-src 'self'; object-src 'none'; base-uri 'none'; "
            "frame-ancestors 'none'")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        if response.mimetype == "text/html":
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.errorhandler(OAuthError)
    def _oauth_error(e: OAuthError) -> tuple[str, int]:
        return render_template("problem.html", error=e.error, description=e.description), 400

    @app.errorhandler(JoseError)
    def _id_token_error(e: JoseError) -> tuple[str, int]:
        # An ID token that fails validation (signature, iss, aud, exp, nonce): nobody is signed in.
        return render_template("problem.html", error="invalid_id_token", description=e.error), 400

    @app.errorhandler(requests.RequestException)
    def _provider_unreachable(e: requests.RequestException) -> tuple[str, int]:
        current_app.logger.warning("provider request failed: %s", e)
        return render_template("problem.html", error="provider_unreachable", description=None), 502

    return app


# ---- the signed-in citizen ----------------------------------------------------------------------

def portal() -> PortalConfig:
    return current_app.extensions["portal"]


def provider() -> Any:
    return current_app.extensions["portal.oauth"].create_client(PROVIDER)


def current_user() -> dict[str, Any] | None:
    return session.get("user")


def external_url(endpoint: str) -> str:
    """An absolute URL on the portal's configured base URL, exactly as registered at the provider
    (redirect URIs are compared as exact strings, RFC 6749 §3.1.2.3), whatever Host the browser used."""
    return portal().base_url + url_for(endpoint)


def safe_next(value: str | None) -> str:
    """Only a path on this portal: never an open redirect. Browsers drop tabs and newlines inside a
    URL and read a backslash as a slash, so any control character, space or backslash is refused."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value \
            and not any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in value):
        return value
    return url_for("pages.home")


def login_required(view: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if current_user() is None:
            return start_login(request.full_path.rstrip("?"))
        return view(*args, **kwargs)

    return wrapped


def assurance_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """The page needs the portal's step-up level; a lower session goes back to SatuID for step-up.

    The level actually reached is the ``acr`` in the ID token (OIDC Core §2); ``acr_values`` is only a
    request (§3.1.2.1), so the answer is checked, not assumed.
    """

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        user = current_user()
        if user is None or user.get("acr") not in portal().accepted_acrs:
            return start_login(request.full_path.rstrip("?"), acr=portal().step_up_acr)
        return view(*args, **kwargs)

    return wrapped


def start_login(next_path: str | None, acr: str | None = None) -> Response:
    """Send the browser to SatuID's authorization endpoint (code flow, PKCE, state, nonce)."""
    session["next"] = safe_next(next_path)
    extra: dict[str, str] = {"ui_locales": portal().ui_locales}
    if acr:
        extra["acr_values"] = acr
        session["wanted_acr"] = acr
    else:
        session.pop("wanted_acr", None)
    return provider().authorize_redirect(external_url("auth.callback"), **extra)


def pages_blueprint(import_name: str) -> Blueprint:
    """The portal's own pages, starting with the home page every portal has."""
    bp = Blueprint("pages", import_name, template_folder="templates")
    bp.add_url_rule("/", "home", home)
    return bp


def home() -> str:
    """Who is signed in and exactly which claims the portal received (ID token and userinfo).

    It is also the post_logout_redirect_uri: SatuID sends the browser back here with the ``state`` we
    sent to its end_session_endpoint (RP-Initiated Logout 1.0 §3), which must be ours and unused.
    """
    if "state" in request.args and current_user() is None:
        provider().validate_logout_response()
        return render_template("logged_out.html")
    return render_template("home.html")


# ---- protocol routes ----------------------------------------------------------------------------

auth_bp = Blueprint("auth", __name__)


@auth_bp.get("/login")
def login() -> Response:
    return start_login(request.args.get("next"))


@auth_bp.get("/auth/initiate")
def initiate() -> Response:
    """Third-party initiated login (OpenID Connect Core §4): SatuID's services home sends the citizen
    here with ``iss``. It must be the provider this portal trusts (a login started by another issuer
    is refused); ``target_link_uri``, when given, must lead back into this portal."""
    if request.args.get("iss", "").rstrip("/") != portal().issuer:
        abort(400, "iss is not the provider this portal trusts")
    target = request.args.get("target_link_uri", "")
    next_path = None
    if target.startswith(portal().base_url + "/"):
        next_path = target[len(portal().base_url):]
    return start_login(next_path)


@auth_bp.get("/auth/callback")
def callback() -> Any:
    """The authorization response: the library checks state, exchanges the code with the PKCE
    verifier, and validates the ID token (signature, iss, aud, exp, nonce)."""
    client = provider()
    token = client.authorize_access_token()
    id_claims = dict(token["userinfo"])
    userinfo = dict(client.userinfo(token=token))
    if userinfo.get("sub") != id_claims["sub"]:
        abort(400, "userinfo sub differs from the ID token's (OIDC Core §5.3.2)")
    wanted = session.pop("wanted_acr", None)
    next_path = session.pop("next", None)
    if wanted and id_claims.get("acr") not in portal().accepted_acrs:
        return render_template("problem.html", error="insufficient_assurance",
                               description=None, acr=id_claims.get("acr")), 403
    session.rotate()  # type: ignore[attr-defined]
    session["user"] = {
        "sub": id_claims["sub"],
        "sid": id_claims.get("sid"),
        "acr": id_claims.get("acr"),
        "amr": id_claims.get("amr"),
        "auth_time": id_claims.get("auth_time"),
        "name": userinfo.get("name") or id_claims.get("name"),
        "id_token": token["id_token"],
        "id_token_claims": id_claims,
        "userinfo": userinfo,
    }
    return redirect(safe_next(next_path))


@auth_bp.post("/logout")
def logout() -> Response:
    """RP-initiated logout (OIDC RP-Initiated Logout 1.0 §2): end ours, then ask SatuID to end its."""
    user = current_user()
    session.clear()
    if user is None:
        return redirect(url_for("pages.home"))
    return provider().logout_redirect(
        post_logout_redirect_uri=external_url("pages.home"),
        id_token_hint=user["id_token"],
        client_id=portal().client_id,
        ui_locales=portal().ui_locales,
    )


@auth_bp.post("/auth/backchannel-logout")
def backchannel_logout() -> Response:
    """SatuID tells us a login ended (Back-Channel Logout 1.0 §2.5): end the sessions it created."""
    client = provider()
    metadata = client.load_server_metadata()
    token = request.form.get("logout_token", "")

    def refusal(description: str) -> Response:
        response = jsonify(error="invalid_request", error_description=description)
        response.status_code = 400
        response.headers["Cache-Control"] = "no-store"
        return response

    if not token:
        return refusal("logout_token is missing")
    try:
        claims = verify_logout_token(
            token, issuer=metadata["issuer"], client_id=portal().client_id,
            jwks=lambda force: client.fetch_jwk_set(force=force),
            algorithms=metadata.get("id_token_signing_alg_values_supported"),
        )
    except InvalidLogoutToken as e:
        return refusal(str(e))
    store: SessionStore = current_app.extensions["portal.sessions"]
    if not store.first_use_of(claims["jti"], float(claims["exp"])):
        return refusal("logout token already used")  # §2.6 step 7: a replay
    ended = store.end_logins(sid=claims.get("sid"), sub=claims.get("sub"))
    current_app.logger.info("back-channel logout: %d session(s) ended", ended)
    response = Response(status=200)
    response.headers["Cache-Control"] = "no-store"
    return response
