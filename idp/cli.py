"""Operator commands for the infrastructure: schema migrations, the audit log, short-lived state.

The parts' own commands (``seed-demo``, ``clients``, ``keys``, ``sessions``...) live next to what they
operate on; the composition root lists them all.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click
from flask import Flask, current_app
from flask.cli import AppGroup
from redis.exceptions import RedisError

from idp import audit, cache
from idp.db import get_engine, get_session, make_engine, unit_of_work
from idp.signed_note import Signer, Verifier, load_or_create
from idp.store import DatabaseStore, get_store

db_cli = AppGroup("db", help="Database schema (Alembic migrations).")
audit_cli = AppGroup("audit", help="The audit log: its Merkle tree, checkpoints and proofs.")
store_cli = AppGroup("store", help="Short-lived state.")

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"

# Alembic (with Mako and Pygments, some 9 MiB of a process) is imported where a migration runs, not
# by every web worker that builds the app and so lists these commands.
if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy.engine import Engine
    from sqlalchemy.orm import Session


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


@db_cli.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Apply migrations up to REVISION (default: head)."""
    from alembic import command

    command.upgrade(alembic_config(current_app.config["IDP"].database_url), revision)
    click.echo(f"database at {revision}")


@db_cli.command("revision")
@click.option("-m", "--message", required=True)
@click.option("--autogenerate/--empty", default=True)
def db_revision(message: str, autogenerate: bool) -> None:
    """Write a new migration (developers)."""
    from alembic import command

    command.revision(
        alembic_config(current_app.config["IDP"].database_url), message=message,
        autogenerate=autogenerate,
    )


def _audit_key_path() -> str:
    settings = current_app.config["IDP"]
    return str(settings.audit_key_file or settings.instance_path / "audit-checkpoint.pem")


def audit_signer() -> Signer:
    """The checkpointer's key: ``IDP_AUDIT_KEY_FILE``, or outside production a key made on first use
    in the instance folder. Production never makes one silently: a new key would make monitors
    that pinned the old one reject every later checkpoint."""
    settings = current_app.config["IDP"]
    path = _audit_key_path()
    production = settings.environment == "production"
    if production and not settings.audit_key_file:
        raise click.ClickException("IDP_AUDIT_KEY_FILE must name the checkpoint signing key "
                                   "(make one with `flask audit keygen FILE`)")
    try:
        return load_or_create(path, audit.origin_of(settings.issuer), create=not production)
    except FileNotFoundError:
        raise click.ClickException(f"no checkpoint signing key at {path}") from None


@audit_cli.command("keygen")
@click.argument("path", type=click.Path(dir_okay=False))
def audit_keygen(path: str) -> None:
    """Make a new checkpoint signing key at PATH (mode 0600) and print its verifier key."""
    if Path(path).exists():
        raise click.ClickException(f"{path} exists; a log keeps its key")
    signer = load_or_create(path, audit.origin_of(current_app.config["IDP"].issuer), create=True)
    click.echo(signer.verifier_key)


@audit_cli.command("key")
def audit_key() -> None:
    """Print the verifier key that checks this log's checkpoints (for monitors to pin)."""
    click.echo(audit_signer().verifier_key)


@audit_cli.command("checkpoint")
@click.option("--forever", is_flag=True, help="Keep folding new events, and run the verifications "
              "the helpdesk queues (a service's command).")
@click.option("--interval", type=click.FloatRange(min=0.1), default=1.0, show_default=True,
              help="Seconds between passes with --forever when nothing is waiting.")
# At most 60,000: a pass holds its batch's rows and hashes in memory and in one transaction.
@click.option("--batch", type=click.IntRange(min=1, max=60_000), default=50_000, show_default=True,
              help="Most events folded into one checkpoint.")
def audit_checkpoint(forever: bool, interval: float, batch: int) -> None:
    """Fold new events into the Merkle tree and sign a checkpoint; with --forever, keep doing so.

    Only one checkpointer works at a time (an advisory lock); a second one waits its turn. With
    --forever a thread of its own runs the verifications the helpdesk queues, so that folding never
    waits for one.
    """
    import signal

    checkpointer = audit.Checkpointer(audit_signer(), batch)
    # The size and root signed last, kept beside the key and outside the database: a database
    # rolled back or rewritten below it is refused rather than signed over.
    head_file = Path(_audit_key_path() + ".head")
    stop = threading.Event()
    verifier = None
    if forever:
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]  # Werkzeug's proxy
        verifier = threading.Thread(target=_verify_queued_until, args=(app, stop),
                                    name="audit-verifier", daemon=True)
        verifier.start()
    try:
        while True:
            try:
                with unit_of_work() as session:
                    folded = checkpointer.fold(session, last=_read_head(head_file))
            except audit.TamperedLog as e:
                raise click.ClickException(f"refusing to sign: {e}") from None
            except Exception as e:  # an outage: the next pass tries again
                if not forever:
                    raise
                click.echo(f"checkpoint failed, retrying: {type(e).__name__}", err=True)
                folded = None
            if folded is not None and folded.added:
                _write_head(head_file, folded.size, folded.root)
                click.echo(f"checkpoint: {folded.size} events (+{folded.added})")
            elif not forever:
                click.echo("checkpoint: nothing new" if folded is not None
                           else "checkpoint: another checkpointer is at work")
            if not forever or stop.is_set():
                return
            if folded is None or folded.added < batch:
                stop.wait(interval)
    finally:
        stop.set()
        if verifier is not None:
            verifier.join(VERIFIER_GRACE_SECONDS)  # a verification in progress records its stop


#: How often the checkpointer's verifier looks for a queued verification, and how long the
#: checkpointer waits, when it stops, for a verification in progress to record that it stopped.
VERIFY_POLL_SECONDS = 5.0
VERIFIER_GRACE_SECONDS = 20.0


def _verify_queued_until(app: Flask, stop: threading.Event) -> None:
    with app.app_context():
        while not stop.is_set():
            try:
                ran = verify_queued(stopping=stop.is_set)
            except audit.VerificationStopped as e:
                click.echo(f"verification: stopped ({e}), and recorded as such", err=True)
                if stop.is_set():
                    return
                ran = ""  # the lock dropped or the replica lags: the next request may fare better
            except Exception as e:  # an outage: the next claim records the verification as interrupted
                click.echo(f"verification failed: {type(e).__name__}", err=True)
                ran = ""
            if not isinstance(ran, str):
                click.echo(f"verification {ran[0]}: {_verify_summary(ran[1])}")
            stop.wait(VERIFY_POLL_SECONDS)


@contextmanager
def verification_source() -> Iterator[Engine]:
    """Where a verification reads the log: ``IDP_AUDIT_VERIFY_DATABASE_URL`` (a replica: reading
    the whole log is hours of I/O that the primary's sign-ons need), else the primary. Its outcome
    is written to the primary either way."""
    settings = current_app.config["IDP"]
    if not settings.audit_verify_database_url:
        yield get_engine()
        return
    engine = make_engine(settings.audit_verify_database_url, settings.db_ping_after_idle_ms / 1000,
                         settings.db_prepare_threshold)
    try:
        yield engine
    finally:
        engine.dispose()


def verify_queued(pinned: Verifier | None = None, stopping: Callable[[], bool] | None = None
                  ) -> tuple[int, audit.VerifyResult] | str:
    """Run the verification the helpdesk queued, if any, recording its start and outcome in the
    log: the request's id and the result, or why none ran. One runs at a time
    (``audit.verifier_lock``). A claimed verification ends with an outcome or
    a stop; if its process is killed instead, the next claim records it as interrupted."""
    with unit_of_work() as session:
        if audit.queued_request(session) is None:  # the usual answer, without taking a lock
            return "none queued"
    engine = get_engine()
    with audit.verifier_lock(engine) as lock:
        if not lock.held:
            return "another verification is running"
        with unit_of_work() as session:
            request_id = audit.claim_verification(session, close_interrupted=True)
            newest = _newest_checkpoint(session)
        if request_id is None:
            return "none queued"

        def stop_now() -> bool:
            # A verifier whose lock went (its connection dropped) stops: another may have started.
            return (stopping is not None and stopping()) or not lock.alive()

        try:
            with verification_source() as source:
                result = _verify_caught_up(source, newest, pinned, stop_now)
        except Exception as e:
            if isinstance(e, ReplicaBehind):
                reason = "replica_behind"
            elif isinstance(e, audit.VerificationStopped):
                reason = "lost_lock" if lock.lost else "stopped"
            else:
                reason = type(e).__name__
            with unit_of_work() as session:
                audit.verification_stopped(session, request_id, reason)
            raise
        with unit_of_work() as session:
            audit.verification_finished(session, request_id, result)
    return request_id, result


#: How long a verification waits for the replica it reads to reach the primary's newest checkpoint.
REPLICA_WAIT_SECONDS = 60.0


class ReplicaBehind(audit.VerificationStopped):
    """The replica has not reached the primary's newest checkpoint (its replay lags or stopped)."""


def _newest_checkpoint(session: Session) -> tuple[int, bytes] | None:
    """The primary's newest checkpoint, for a verification that reads a replica to wait for (None
    without one: the primary is read, and its own snapshot is the log as it stands)."""
    if not current_app.config["IDP"].audit_verify_database_url:
        return None
    newest = audit.checkpoint_at(session)
    return (newest.tree_size, bytes(newest.root_hash)) if newest else None


def _verify_caught_up(source: Engine, newest: tuple[int, bytes] | None, pinned: Verifier | None,
                      stopping: Callable[[], bool] | None = None) -> audit.VerifyResult:
    """``audit.verify_in`` on a snapshot of ``source`` that holds the primary's ``newest``
    checkpoint: a replica that lags is waited for, a minute at most, and one that stopped replaying
    is reported (``ReplicaBehind``) rather than passing an older part of the log. A replica whose
    checkpoint of that size has another root holds another log: the verification fails."""
    deadline = time.monotonic() + REPLICA_WAIT_SECONDS
    while True:
        with audit.snapshot(source) as snapshot:
            found = audit.checkpoint_at(snapshot, newest[0]) if newest else None
            if newest is None or found is not None:
                if newest is not None and found is not None and bytes(found.root_hash) != newest[1]:
                    return audit.VerifyResult(False, 0, reason=(
                        f"the checkpoint of {newest[0]} events read has another root than the "
                        "primary's"))
                return audit.verify_in(snapshot, pinned, stopping)
        if time.monotonic() >= deadline:
            raise ReplicaBehind(f"the replica has not reached checkpoint {newest[0]}")
        if stopping is not None and stopping():
            raise audit.VerificationStopped("stopped while waiting for the replica")
        time.sleep(1)


def _verify_summary(result: audit.VerifyResult) -> str:
    if result.ok:
        return (f"ok ({result.checked} rows, {result.checkpoints} checkpoints, "
                f"{result.pending} not yet in the tree)")
    return f"broken at row {result.broken_id}: {result.reason}"


def _read_head(path: Path) -> tuple[int, bytes] | None:
    try:
        size, root = path.read_text().split()
    except FileNotFoundError:
        return None
    return int(size), base64.b64decode(root)


def _write_head(path: Path, size: int, root: bytes) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"{size} {base64.b64encode(root).decode()}\n")
    tmp.replace(path)


@audit_cli.command("verify")
@click.option("--key", "pinned", help="A verifier key every checkpoint must also be signed by.")
@click.option("--queued", is_flag=True, help="Run the verification the helpdesk queued, if any, and "
              "record its outcome in the log (the checkpointer with --forever does this itself).")
def audit_verify(pinned: str | None, queued: bool) -> None:
    """Recompute the tree from every event and check every signed checkpoint; print "ok" or the
    first problem."""
    verifier = Verifier.parse(pinned) if pinned else None
    prefix = ""
    if not queued:
        with unit_of_work() as session:
            newest = _newest_checkpoint(session)
        with verification_source() as source:
            try:
                result = _verify_caught_up(source, newest, verifier)
            except ReplicaBehind as e:
                raise click.ClickException(str(e)) from None
    else:
        ran = verify_queued(verifier)
        if isinstance(ran, str):
            click.echo(f"verification: {ran}")
            return
        prefix, result = f"verification {ran[0]}: ", ran[1]
    click.echo(prefix + _verify_summary(result), err=not result.ok)
    if not result.ok:
        raise SystemExit(1)


@audit_cli.command("prove")
@click.argument("event_id", type=int)
def audit_prove(event_id: int) -> None:
    """Print, as JSON, the proof that event EVENT_ID is in the latest checkpoint."""
    proof = audit.inclusion_proof(get_session(), event_id)
    if proof is None:
        raise click.ClickException(f"event {event_id} is not in a checkpoint (yet)")
    click.echo(json.dumps(proof.as_json(), indent=2, ensure_ascii=False))


@audit_cli.command("consistency")
@click.argument("old", type=click.IntRange(min=1))
@click.argument("new", type=click.IntRange(min=1), required=False)
def audit_consistency(old: int, new: int | None) -> None:
    """Print, as JSON, the proof that the tree of OLD events is a prefix of the one of NEW (default:
    the latest checkpoint), both being checkpoint sizes."""
    session = get_session()
    first, second = audit.checkpoint_at(session, old), audit.checkpoint_at(session, new)
    if first is None or second is None or first.tree_size > second.tree_size:
        raise click.ClickException("both sizes must be checkpoints, the first not after the second")
    click.echo(json.dumps(audit.consistency_json(session, first, second), indent=2))


@audit_cli.command("partitions")
@click.option("--ahead", type=click.IntRange(min=0, max=24), default=2, show_default=True)
def audit_partitions(ahead: int) -> None:
    """Create the audit log's monthly partitions up to AHEAD months on (PostgreSQL; the
    checkpointer also does this when it starts and once a day)."""
    with unit_of_work() as session:
        conn = session.connection()
        if conn.dialect.name != "postgresql":
            click.echo("the embedded database keeps one table")
            return
        from idp.models.base import utcnow

        made = audit.ensure_partitions(conn, utcnow().date(), ahead)
    click.echo("made: " + ", ".join(made) if made else "every partition exists")


@store_cli.command("purge")
def store_purge() -> None:
    """Delete expired short-lived state (database backend; Redis expires keys itself)."""
    store = get_store()
    if isinstance(store, DatabaseStore):
        with unit_of_work():
            purged = store.purge()
        click.echo(f"purged {purged} rows")
    else:
        click.echo("redis expires keys itself")


@store_cli.command("drop-caches")
def store_drop_caches() -> None:
    """Make every worker reload portals and signing keys on its next request (after a change made
    outside the ``flask`` commands, e.g. in SQL; the commands do this themselves)."""
    try:
        cache.announce()
    except RedisError as e:
        raise click.ClickException(f"the store cannot be reached ({type(e).__name__}): no worker "
                                   "was told; run this again once it is back") from e
    click.echo("every worker reloads its caches on its next request")


def init_app(app: Flask, commands: Sequence[click.Command]) -> None:
    """Register the infrastructure's command groups and the parts' ``commands``."""
    for group in (db_cli, audit_cli, store_cli, *commands):
        app.cli.add_command(group)
