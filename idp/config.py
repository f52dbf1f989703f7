"""Settings, read once from ``IDP_*`` environment variables.

With nothing set, SatuID runs on the embedded default: a SQLite file and the short-lived state in the
same database, both under the instance folder, and a secret key generated once and kept there.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit


def _instance_secret(instance: Path, name: str, nbytes: int = 32) -> str:
    """Return a secret kept in ``instance/<name>``, creating it (mode 0600) on first use."""
    path = instance / name
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    value = secrets.token_urlsafe(nbytes)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)
    return value


class ConfigError(RuntimeError):
    """A setting that production cannot run without (raised at start-up, never mid-request)."""


def _bool(value: str | None, default: bool = False) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    instance_path: Path
    database_url: str
    redis_url: str | None
    redis_prefix: str  # lets several deployments (or test runs) share one Redis
    issuer: str
    secret_key: str
    key_encryption_key: str
    pairwise_secret: str
    environment: str  # "development" or "production"
    dev_outbox: bool
    argon2_time_cost: int
    argon2_memory_cost: int  # KiB
    argon2_parallelism: int
    # Hashes and verifies running at once in one process (each holds argon2_memory_cost while it
    # runs), and how long a request waits for a free one before it is answered 503.
    argon2_concurrency: int
    argon2_wait_seconds: int
    db_ping_after_idle_ms: int  # a pooled connection idle this long is pinged before use
    # psycopg prepares a statement a connection has run this many times; None never (a pooler in
    # transaction mode that does not track prepared statements: PgBouncer before 1.21)
    db_prepare_threshold: int | None
    session_idle_seconds: int
    session_absolute_seconds: int
    login_max_failures: int
    login_lockout_seconds: int
    ip_rate_limit: int  # attempts per minute per IP
    audit_rate_limit: int  # requests per minute per IP to the public /audit endpoints; 0: no limit
    webauthn_rp_id: str
    webauthn_origin: str
    access_token_lifetime: int
    id_token_lifetime: int
    refresh_token_lifetime: int
    refresh_reuse_grace_seconds: int  # a retry of a just-rotated refresh token is not a reuse
    trusted_proxies: int
    metrics_token: str | None
    # A first authenticator added with only an emailed code behind it waits this long (every
    # channel told, any can cancel) before it counts toward level 2.
    authenticator_waiting_seconds: int = 24 * 3600
    # A helpdesk change decided over the phone waits this long before it takes effect.
    helpdesk_cooling_off_seconds: int = 24 * 3600
    staff_idle_seconds: int = 15 * 60
    staff_daily_lookups: int = 40  # NIK lookups per officer per day before supervisors are alerted
    # The outbox's delivery worker: email through SMTP, SMS through an HTTP gateway.
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_starttls: bool = True
    smtp_username: str | None = None
    smtp_password: str | None = None
    mail_from: str = "SatuID <no-reply@satuid.localhost>"
    sms_gateway_url: str | None = None
    sms_gateway_auth_header: str | None = None  # "Name: value", e.g. "Authorization: Bearer ..."
    # string.Template with $to and $text, each escaped for the content type below.
    sms_gateway_body: str = '{"to": "$to", "text": "$text"}'
    sms_gateway_content_type: str = "application/json"
    outbox_max_attempts: int = 8
    outbox_retry_seconds: int = 30  # the first retry's delay; doubled for each later one
    # The audit checkpointer's Ed25519 key (PEM). Only ``flask audit checkpoint`` reads it; the web
    # workers never do. Unset outside production: kept in the instance folder, made on first use.
    audit_key_file: str | None = None
    # The verifier key every checkpoint must be signed by (``flask audit key`` prints it). Unset, the
    # key of the first checkpoint is trusted for all later ones.
    audit_verifier_key: str | None = None
    # Where ``flask audit verify`` and the helpdesk's queued verifications read the log: a
    # PostgreSQL replica. Unset, the primary.
    audit_verify_database_url: str | None = None

    @property
    def embedded(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def secure_cookies(self) -> bool:
        return self.issuer.startswith("https://")


def load_settings(overrides: dict[str, str] | None = None) -> Settings:
    """Build the settings from the environment; ``overrides`` (tests) take precedence."""
    env = {**os.environ, **(overrides or {})}

    def optional(name: str) -> str | None:
        value = env.get(f"IDP_{name}")
        return value if value else None

    def get(name: str, default: str) -> str:
        return optional(name) or default

    def number(name: str, default: int) -> int:
        raw = get(name, str(default))
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"IDP_{name} must be a whole number, not {raw!r}") from None

    instance = Path(get("INSTANCE_PATH", "instance")).resolve()
    instance.mkdir(parents=True, exist_ok=True)
    environment = get("ENV", "development")
    issuer = get("ISSUER", "http://127.0.0.1:5000").rstrip("/")
    database_url = get("DATABASE_URL", f"sqlite:///{instance / 'satuid.db'}")
    host = urlsplit(issuer).hostname or "localhost"
    settings = Settings(
        instance_path=instance,
        database_url=database_url,
        redis_url=optional("REDIS_URL"),
        redis_prefix=get("REDIS_PREFIX", "satuid:"),
        issuer=issuer,
        secret_key=optional("SECRET_KEY") or _instance_secret(instance, "secret_key"),
        key_encryption_key=optional("KEY_ENCRYPTION_KEY")
        or _instance_secret(instance, "key_encryption_key"),
        pairwise_secret=optional("PAIRWISE_SECRET") or _instance_secret(instance, "pairwise_secret"),
        environment=environment,
        dev_outbox=_bool(optional("DEV_OUTBOX"), default=environment != "production"),
        # OWASP (2024): argon2id m=19 MiB, t=2, p=1 is the floor; we go above it.
        argon2_time_cost=number("ARGON2_TIME_COST", 3),
        argon2_memory_cost=number("ARGON2_MEMORY_COST", 65536),
        argon2_parallelism=number("ARGON2_PARALLELISM", 1),
        argon2_concurrency=number("ARGON2_CONCURRENCY", 1),
        argon2_wait_seconds=number("ARGON2_WAIT_SECONDS", 10),
        db_ping_after_idle_ms=number("DB_PING_AFTER_IDLE_MS", 1000),
        db_prepare_threshold=None if get("DB_PREPARE_THRESHOLD", "5").strip().lower() == "off"
        else number("DB_PREPARE_THRESHOLD", 5),
        session_idle_seconds=number("SESSION_IDLE_SECONDS", 30 * 60),
        session_absolute_seconds=number("SESSION_ABSOLUTE_SECONDS", 12 * 3600),
        login_max_failures=number("LOGIN_MAX_FAILURES", 5),
        login_lockout_seconds=number("LOGIN_LOCKOUT_SECONDS", 15 * 60),
        ip_rate_limit=number("IP_RATE_LIMIT", 30),
        audit_rate_limit=number("AUDIT_RATE_LIMIT", 120),
        webauthn_rp_id=get("WEBAUTHN_RP_ID", host),
        webauthn_origin=get("WEBAUTHN_ORIGIN", issuer),
        access_token_lifetime=number("ACCESS_TOKEN_LIFETIME", 300),
        id_token_lifetime=number("ID_TOKEN_LIFETIME", 300),
        refresh_token_lifetime=number("REFRESH_TOKEN_LIFETIME", 30 * 24 * 3600),
        refresh_reuse_grace_seconds=number("REFRESH_REUSE_GRACE_SECONDS", 10),
        trusted_proxies=number("TRUSTED_PROXIES", 0),
        metrics_token=optional("METRICS_TOKEN"),
        authenticator_waiting_seconds=number("AUTHENTICATOR_WAITING_SECONDS", 24 * 3600),
        helpdesk_cooling_off_seconds=number("HELPDESK_COOLING_OFF_SECONDS", 24 * 3600),
        staff_idle_seconds=number("STAFF_IDLE_SECONDS", 15 * 60),
        staff_daily_lookups=number("STAFF_DAILY_LOOKUPS", 40),
        smtp_host=optional("SMTP_HOST"),
        smtp_port=number("SMTP_PORT", 587),
        smtp_starttls=_bool(optional("SMTP_STARTTLS"), default=True),
        smtp_username=optional("SMTP_USERNAME"),
        smtp_password=optional("SMTP_PASSWORD"),
        mail_from=get("MAIL_FROM", f"SatuID <no-reply@{host}>"),
        sms_gateway_url=optional("SMS_GATEWAY_URL"),
        sms_gateway_auth_header=optional("SMS_GATEWAY_AUTH_HEADER"),
        sms_gateway_body=get("SMS_GATEWAY_BODY", '{"to": "$to", "text": "$text"}'),
        sms_gateway_content_type=get("SMS_GATEWAY_CONTENT_TYPE", "application/json"),
        outbox_max_attempts=number("OUTBOX_MAX_ATTEMPTS", 8),
        outbox_retry_seconds=number("OUTBOX_RETRY_SECONDS", 30),
        audit_key_file=optional("AUDIT_KEY_FILE"),
        audit_verifier_key=optional("AUDIT_VERIFIER_KEY"),
        audit_verify_database_url=optional("AUDIT_VERIFY_DATABASE_URL"),
    )
    if settings.audit_verify_database_url and (
            settings.embedded or not settings.audit_verify_database_url.startswith("postgresql")):
        raise ConfigError("IDP_AUDIT_VERIFY_DATABASE_URL names a PostgreSQL replica of "
                          "IDP_DATABASE_URL, which must be PostgreSQL too")
    if settings.argon2_concurrency < 1:
        raise ConfigError("IDP_ARGON2_CONCURRENCY must be at least 1")
    if settings.db_ping_after_idle_ms < 0:
        raise ConfigError("IDP_DB_PING_AFTER_IDLE_MS must not be negative")
    if settings.db_prepare_threshold is not None and settings.db_prepare_threshold < 0:
        raise ConfigError("IDP_DB_PREPARE_THRESHOLD must be a whole number from 0, or off")
    if settings.argon2_wait_seconds < 0:
        raise ConfigError("IDP_ARGON2_WAIT_SECONDS must not be negative")
    if environment == "production":
        _check_production(settings, env)
    return settings


def _check_production(settings: Settings, env: dict[str, str]) -> None:
    """Production must not fall back to the embedded defaults or to secrets kept in a local file."""
    problems = []
    for name in ("SECRET_KEY", "KEY_ENCRYPTION_KEY", "PAIRWISE_SECRET", "DATABASE_URL", "REDIS_URL",
                 "ISSUER"):
        if not env.get(f"IDP_{name}"):
            problems.append(f"IDP_{name} must be set")
    if not settings.issuer.startswith("https://"):
        problems.append("IDP_ISSUER must be an https URL")
    if settings.embedded:
        problems.append("IDP_DATABASE_URL must point to PostgreSQL")
    if settings.dev_outbox:
        problems.append("IDP_DEV_OUTBOX must be off")
    for name in ("SMTP_HOST", "SMS_GATEWAY_URL"):
        if not env.get(f"IDP_{name}"):
            problems.append(f"IDP_{name} must be set (codes and notices must reach citizens)")
    if not settings.metrics_token:
        problems.append("IDP_METRICS_TOKEN must be set (/metrics is public without it)")
    if problems:
        raise ConfigError("production settings: " + "; ".join(problems))
