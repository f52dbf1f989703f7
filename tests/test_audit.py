"""The audit log is a Merkle tree with signed checkpoints: `flask audit verify` finds a changed, deleted
or reordered event, a forged checkpoint or node; proofs of inclusion and consistency check out with
nothing but the published checkpoint; appends from several processes at once lose nothing."""

from __future__ import annotations

import base64
import datetime as dt
import json
import multiprocessing
import random
import types
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text, update

from idp import audit, merkle
from idp.db import get_session, unit_of_work
from idp.models import AuditCheckpoint, AuditEvent, AuditNode
from idp.signed_note import Checkpoint, Verifier, load_or_create

# ---- RFC 9162 hashing and proofs, against a tree computed the way §2.1.1 defines it ------------

def mth(leaves: list[bytes]) -> bytes:
    """MTH straight from the RFC's recursive definition (independent of merkle.root)."""
    if not leaves:
        return merkle.EMPTY
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return merkle.node_hash(mth(leaves[:k]), mth(leaves[k:]))


def leaves_of(n: int) -> list[bytes]:
    return [merkle.leaf_hash(f"event {i}".encode()) for i in range(n)]


def test_known_answer_for_the_empty_tree_and_one_leaf() -> None:
    assert merkle.root([]).hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    # RFC 9162 §2.1.1: a one-leaf tree's root is SHA-256(0x00 || d); for d = "" that is 6e340b9c...
    assert merkle.leaf_hash(b"").hex().startswith("6e340b9cffb37a98")


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=1, max_value=140), st.data())
def test_inclusion_and_consistency_proofs_verify_for_every_shape(n: int, data: st.DataObject) -> None:
    leaves = leaves_of(n)
    assert merkle.root(leaves) == mth(leaves)

    def subtree(a: int, b: int) -> bytes:
        return mth(leaves[a:b])

    index = data.draw(st.integers(min_value=0, max_value=n - 1))
    path = merkle.inclusion_path(index, n, subtree)
    assert merkle.verify_inclusion(leaves[index], index, n, path, mth(leaves))
    assert not merkle.verify_inclusion(leaves[(index + 1) % n], index, n, path, mth(leaves)) or n == 1
    if path:
        bent = [*path[:-1], merkle.leaf_hash(b"forged")]
        assert not merkle.verify_inclusion(leaves[index], index, n, bent, mth(leaves))

    old = data.draw(st.integers(min_value=1, max_value=n))
    proof = merkle.consistency_path(old, n, subtree)
    assert merkle.verify_consistency(old, n, mth(leaves[:old]), mth(leaves), proof)
    if old < n:
        # A tree that rewrote an old leaf is not an extension of the old one.
        forked = [*leaves[: old - 1], merkle.leaf_hash(b"rewritten"), *leaves[old:]]
        fork_proof = merkle.consistency_path(old, n, lambda a, b: mth(forked[a:b]))
        assert not merkle.verify_consistency(old, n, mth(leaves[:old]), mth(forked), fork_proof)


def test_compact_range_gives_every_prefix_root() -> None:
    leaves = leaves_of(300)
    compact = merkle.CompactRange()
    for i, leaf in enumerate(leaves):
        compact.append(leaf)
        if i % 37 == 0 or i == 299:
            assert compact.root() == mth(leaves[: i + 1])


# ---- the log in the database ---------------------------------------------------------------------

def write_events(app: Flask, n: int, per_unit: int = 1) -> None:
    with app.app_context():
        for start in range(0, n, per_unit):
            with unit_of_work():
                for i in range(start, min(n, start + per_unit)):
                    audit.append("login", actor="citizen:x", citizen_id=None, attempt=i)


def checkpoint(app: Flask) -> str:
    result = app.test_cli_runner().invoke(args=["audit", "checkpoint"])
    assert result.exit_code == 0, result.output
    return result.output


def verify(app: Flask, *extra: str) -> tuple[int, str]:
    result = app.test_cli_runner().invoke(args=["audit", "verify", *extra])
    return result.exit_code, result.output


def leaf_ids(app: Flask) -> list[int]:
    with app.app_context():
        return list(get_session().scalars(select(AuditEvent.id).where(AuditEvent.leaf_index.is_not(None))
                                          .order_by(AuditEvent.leaf_index)))


def test_checkpoints_sign_the_tree_and_verify_checks_them(app: Flask) -> None:
    write_events(app, 5)
    assert checkpoint(app).startswith("checkpoint: 5 events (+5)")
    write_events(app, 300, per_unit=50)  # crosses a stored 256-leaf subtree
    assert "305 events (+300)" in checkpoint(app)
    assert checkpoint(app).startswith("checkpoint: nothing new")
    write_events(app, 2)  # not yet in the tree: reported, not an error
    key = app.test_cli_runner().invoke(args=["audit", "key"]).output.strip()

    code, output = verify(app, "--key", key)
    assert code == 0, output
    assert output.startswith("ok (305 rows, 2 checkpoints, 2 not yet in the tree)")
    with app.app_context():
        assert get_session().scalar(select(AuditNode.hash).where(AuditNode.level == 8)) is not None

    # A monitor pinning another key rejects the log.
    stranger = load_or_create(str(Path(app.config["IDP"].instance_path) / "stranger.pem"),
                              audit.origin_of(app.config["IDP"].issuer), create=True)
    code, output = verify(app, "--key", stranger.verifier_key)
    assert code == 1 and "signature does not verify" in output


def test_verify_finds_a_modified_event(app: Flask) -> None:
    write_events(app, 6)
    checkpoint(app)
    third = leaf_ids(app)[2]
    with app.extensions["idp.engine"].begin() as conn:
        conn.execute(update(AuditEvent).where(AuditEvent.id == third).values(event="logout"))
    code, output = verify(app)
    assert code == 1
    assert f"broken at row {third}" in output and "does not match its leaf hash" in output


def test_leaves_are_salted_so_a_leaf_hash_cannot_be_matched_against_guesses(app: Flask) -> None:
    """Two events alike in every field a guesser could know get unrelated leaves: each commits to
    128 random bits of its own. One written without a salt (by a worker of the release before,
    during a rolling upgrade) is given one by the checkpointer, with its leaf."""
    at = dt.datetime(2026, 11, 24, 9, 30, tzinfo=dt.UTC)
    with app.app_context():
        with unit_of_work():
            audit.append("login", actor="citizen:x", citizen_id=None)
            audit.append("login", actor="citizen:x", citizen_id=None)
        with unit_of_work() as session:
            session.connection().execute(AuditEvent.__table__.insert().values(
                at=at, event="login", actor="citizen:x", details={}))  # as the release before wrote
    checkpoint(app)
    with app.app_context():
        rows = list(get_session().scalars(select(AuditEvent).order_by(AuditEvent.id)))
        leaves = [json.loads(audit.leaf_data(row)) for row in rows]
    salts = [row.salt for row in rows]
    assert all(salt is not None and len(salt) == audit.SALT_BYTES for salt in salts)
    assert len(set(salts)) == 3
    assert [leaf["salt"] for leaf in leaves] == [salt.hex() for salt in salts if salt]
    first, second = leaves[0], leaves[1]
    assert {k: v for k, v in first.items() if k not in ("id", "at", "salt")} == \
        {k: v for k, v in second.items() if k not in ("id", "at", "salt")}
    # Knowing every other field of the first event does not give its leaf.
    unsalted = {k: v for k, v in first.items() if k != "salt"}
    guess = json.dumps(unsalted, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert merkle.leaf_hash(guess) != bytes(rows[0].leaf_hash or b"")
    code, output = verify(app)
    assert code == 0, output


def test_a_leaf_folded_before_salts_keeps_its_bytes() -> None:
    """Leaves already in the tree before salts (no salt stored) are computed as they always were:
    a changed byte would make every old checkpoint fail to verify."""
    old = types.SimpleNamespace(
        id=7, at=dt.datetime(2026, 1, 2, 3, 4, 5, 6000, tzinfo=dt.UTC), event="login",
        actor="citizen:x", citizen_id="x", client_id=None, ip="203.0.113.7",
        details={"attempt": 1}, salt=None)
    assert audit.leaf_data(old) == (
        b'{"actor":"citizen:x","at":"2026-01-02T03:04:05.006000+00:00","citizen_id":"x",'
        b'"client_id":null,"details":{"attempt":1},"event":"login","id":7,"ip":"203.0.113.7"}')


def test_verify_finds_a_changed_salt(app: Flask) -> None:
    write_events(app, 4)
    checkpoint(app)
    second = leaf_ids(app)[1]
    with app.extensions["idp.engine"].begin() as conn:
        conn.execute(update(AuditEvent).where(AuditEvent.id == second).values(salt=bytes(16)))
    code, output = verify(app)
    assert code == 1
    assert f"broken at row {second}" in output and "does not match its leaf hash" in output


def test_verify_finds_a_modified_event_whose_leaf_hash_was_forged_too(app: Flask) -> None:
    write_events(app, 6)
    checkpoint(app)
    third = leaf_ids(app)[2]
    engine = app.extensions["idp.engine"]
    with engine.begin() as conn:
        conn.execute(update(AuditEvent).where(AuditEvent.id == third).values(event="logout"))
    with app.app_context():
        row = get_session().get(AuditEvent, third)
        forged = merkle.leaf_hash(audit.leaf_data(row))
    with engine.begin() as conn:
        conn.execute(update(AuditEvent).where(AuditEvent.id == third).values(leaf_hash=forged))
    code, output = verify(app)
    assert code == 1 and "the leaves give another root" in output


def test_verify_finds_a_deleted_event(app: Flask) -> None:
    write_events(app, 4)
    checkpoint(app)
    second = leaf_ids(app)[1]
    with app.extensions["idp.engine"].begin() as conn:
        conn.execute(AuditEvent.__table__.delete().where(AuditEvent.id == second))
    code, output = verify(app)
    assert code == 1 and "leaf 1 is missing" in output


def test_verify_finds_a_deleted_last_event(app: Flask) -> None:
    write_events(app, 4)
    checkpoint(app)
    last = leaf_ids(app)[-1]
    with app.extensions["idp.engine"].begin() as conn:
        conn.execute(AuditEvent.__table__.delete().where(AuditEvent.id == last))
    code, output = verify(app)
    assert code == 1 and "covers leaves that are missing" in output


def test_verify_finds_reordered_events(app: Flask) -> None:
    write_events(app, 5)
    checkpoint(app)
    ids = leaf_ids(app)
    engine = app.extensions["idp.engine"]
    with engine.begin() as conn:  # swap the places of two events, hashes and all
        rows = {r.id: r for r in conn.execute(select(AuditEvent.id, AuditEvent.leaf_index,
                                                     AuditEvent.leaf_hash).where(AuditEvent.id.in_(ids[1:3])))}
        a, b = rows[ids[1]], rows[ids[2]]
        conn.execute(update(AuditEvent).where(AuditEvent.id == a.id).values(leaf_index=-1))
        conn.execute(update(AuditEvent).where(AuditEvent.id == b.id)
                     .values(leaf_index=a.leaf_index, leaf_hash=a.leaf_hash))
        conn.execute(update(AuditEvent).where(AuditEvent.id == a.id)
                     .values(leaf_index=b.leaf_index, leaf_hash=b.leaf_hash))
    code, output = verify(app)
    assert code == 1 and "content does not match its leaf hash" in output


def test_a_forged_node_is_found_and_never_signed_over(app: Flask) -> None:
    write_events(app, 600, per_unit=100)
    checkpoint(app)
    engine = app.extensions["idp.engine"]
    with engine.begin() as conn:
        conn.execute(update(AuditNode).where(AuditNode.level == 9, AuditNode.index == 0)
                     .values(hash=b"\x00" * 32))
    code, output = verify(app)
    assert code == 1 and "stored subtree 9/0 does not match" in output
    write_events(app, 1)
    refused = app.test_cli_runner().invoke(args=["audit", "checkpoint"])
    assert refused.exit_code == 1 and "refusing to sign" in refused.output


def test_verify_finds_a_forged_checkpoint(app: Flask) -> None:
    write_events(app, 3)
    checkpoint(app)
    write_events(app, 1)
    checkpoint(app)
    with app.extensions["idp.engine"].begin() as conn:  # a forger rewrites the newest note's root
        cp = conn.execute(select(AuditCheckpoint).order_by(AuditCheckpoint.tree_size.desc())).first()
        assert cp is not None
        forged = cp.note.replace(base64.b64encode(cp.root_hash).decode(),
                                 base64.b64encode(b"\x01" * 32).decode())
        conn.execute(update(AuditCheckpoint).where(AuditCheckpoint.tree_size == cp.tree_size)
                     .values(note=forged))
    code, output = verify(app)
    assert code == 1 and "signature does not verify" in output


def test_a_log_rewritten_and_re_signed_with_another_key_fails_against_the_configured_key(
        app: Flask) -> None:
    import dataclasses

    write_events(app, 5)
    checkpoint(app)
    genuine = proof_key(app)
    engine = app.extensions["idp.engine"]
    third = leaf_ids(app)[2]
    with engine.begin() as conn:  # rewrite an event and the whole tree, then sign it anew
        conn.execute(update(AuditEvent).where(AuditEvent.id == third).values(event="logout"))
        conn.execute(update(AuditEvent).values(leaf_index=None, leaf_hash=None))
        conn.execute(AuditNode.__table__.delete())
        conn.execute(AuditCheckpoint.__table__.delete())
    forger = load_or_create(str(Path(app.config["IDP"].instance_path) / "forger.pem"),
                            audit.origin_of(app.config["IDP"].issuer), create=True)
    with app.app_context(), unit_of_work() as session:
        audit.checkpoint(session, forger)
    app.config["IDP"] = dataclasses.replace(app.config["IDP"], audit_verifier_key=genuine)
    code, output = verify(app)
    assert code == 1 and "signature does not verify" in output
    assert app.test_client().get("/audit/key").get_data(as_text=True).strip() == genuine


def test_the_checkpointer_refuses_a_rolled_back_tail(app: Flask) -> None:
    write_events(app, 4)
    checkpoint(app)
    write_events(app, 4)
    checkpoint(app)
    engine = app.extensions["idp.engine"]
    with engine.begin() as conn:  # drop the newest checkpoint and un-fold its events
        conn.execute(AuditCheckpoint.__table__.delete().where(AuditCheckpoint.tree_size == 8))
        conn.execute(update(AuditEvent).where(AuditEvent.leaf_index >= 4)
                     .values(leaf_index=None, leaf_hash=None))
    refused = app.test_cli_runner().invoke(args=["audit", "checkpoint"])
    assert refused.exit_code == 1 and "rolled back" in refused.output


def test_the_checkpointer_refuses_planted_leaf_indexes(app: Flask) -> None:
    write_events(app, 2)
    checkpoint(app)
    with app.extensions["idp.engine"].begin() as conn:
        conn.execute(AuditEvent.__table__.insert().values(
            at=dt.datetime.now(dt.UTC), event="planted", actor="x", details={}, leaf_index=7,
            leaf_hash=b"\x00" * 32))
    refused = app.test_cli_runner().invoke(args=["audit", "checkpoint"])
    assert refused.exit_code == 1 and "beyond the signed size" in refused.output


def test_inclusion_and_consistency_proofs_from_the_cli_check_out(app: Flask) -> None:
    write_events(app, 40, per_unit=10)
    checkpoint(app)
    write_events(app, 700, per_unit=100)
    checkpoint(app)
    runner = app.test_cli_runner()
    for position in (0, 17, 255, 256, 511, 739):
        event_id = leaf_ids(app)[position]
        result = runner.invoke(args=["audit", "prove", str(event_id)])
        assert result.exit_code == 0, result.output
        proof = json.loads(result.output)
        verifier = Verifier.parse(proof["verifier_key"])
        body = verifier.open(proof["checkpoint"])
        assert body is not None
        signed = Checkpoint.parse(body)
        assert signed.size == proof["tree_size"] == 740
        assert json.loads(proof["leaf"])["id"] == event_id
        leaf = merkle.leaf_hash(proof["leaf"].encode())
        path = [base64.b64decode(h) for h in proof["inclusion_path"]]
        assert merkle.verify_inclusion(leaf, position, 740, path, signed.root)
        assert not merkle.verify_inclusion(leaf, (position + 1) % 740, 740, path, signed.root)

    result = runner.invoke(args=["audit", "consistency", "40"])
    assert result.exit_code == 0, result.output
    proof = json.loads(result.output)
    old = Checkpoint.parse(Verifier.parse(proof_key(app)).open(proof["first_checkpoint"]) or "")
    new = Checkpoint.parse(Verifier.parse(proof_key(app)).open(proof["second_checkpoint"]) or "")
    assert (old.size, new.size) == (40, 740)
    assert merkle.verify_consistency(40, 740, old.root, new.root,
                                     [base64.b64decode(h) for h in proof["consistency_path"]])
    assert runner.invoke(args=["audit", "consistency", "41"]).exit_code != 0
    assert runner.invoke(args=["audit", "prove", "999999"]).exit_code != 0


def proof_key(app: Flask) -> str:
    return str(app.test_cli_runner().invoke(args=["audit", "key"]).output.strip())


def test_the_public_audit_endpoints_are_rate_limited_per_address(backend: dict[str, str]) -> None:
    """One address gets IDP_AUDIT_RATE_LIMIT answers a minute, then a JSON 429 with Retry-After
    that no cache keeps; another address is not held back by it. The embedded default does not
    count (a write for every read)."""
    import time

    from tests.conftest import make_app

    app = make_app({**backend, "IDP_AUDIT_RATE_LIMIT": "3"})
    if time.time() % 60 > 55:  # all within one window
        time.sleep(60 - time.time() % 60 + 0.1)
    client = app.test_client()
    answers = [client.get(path).status_code
               for path in ("/audit/checkpoint", "/audit/key", "/audit/consistency?first=1")]
    assert answers == [404, 404, 404]  # no checkpoint yet, but answered
    nothing = client.get("/audit/checkpoint")
    assert nothing.headers["Access-Control-Allow-Origin"] == "*"
    if not backend["IDP_REDIS_URL"]:
        assert nothing.status_code == 404
        app.extensions["idp.engine"].dispose()
        return
    assert nothing.status_code == 429
    refused = client.get("/audit/checkpoint")
    assert refused.status_code == 429 and refused.get_json()["error"] == "too_many_requests"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["Cache-Control"] == "no-store"
    assert refused.headers["Access-Control-Allow-Origin"] == "*"
    other = app.test_client().get("/audit/checkpoint", environ_base={"REMOTE_ADDR": "10.9.8.7"})
    assert other.status_code == 404
    app.extensions["idp.engine"].dispose()


def test_published_checkpoints_and_consistency_proofs_for_monitors(app: Flask) -> None:
    client = app.test_client()
    assert client.get("/audit/checkpoint").status_code == 404
    write_events(app, 3)
    checkpoint(app)
    first = client.get("/audit/checkpoint")
    assert first.status_code == 200 and first.mimetype == "text/plain"
    key = client.get("/audit/key").get_data(as_text=True).strip()
    assert key == proof_key(app)
    verifier = Verifier.parse(key)
    assert verifier.open(first.get_data(as_text=True)) is not None
    assert verifier.open(first.get_data(as_text=True).replace("\n3\n", "\n4\n")) is None

    write_events(app, 10)
    checkpoint(app)
    latest = Checkpoint.parse(verifier.open(client.get("/audit/checkpoint").get_data(as_text=True)) or "")
    assert latest.size == 13 and latest.origin == audit.origin_of(app.config["IDP"].issuer)
    assert any(line.startswith("time ") for line in latest.extensions)
    assert client.get("/audit/checkpoint/3").get_data(as_text=True) == first.get_data(as_text=True)
    proof = client.get("/audit/consistency?first=3").get_json()
    old = Checkpoint.parse(verifier.open(proof["first_checkpoint"]) or "")
    assert merkle.verify_consistency(3, 13, old.root, latest.root,
                                     [base64.b64decode(h) for h in proof["consistency_path"]])
    for bad in ("", "?first=x", "?first=0", "?first=4", "?first=13&second=3", "?first=99999999999999999999"):
        response = client.get("/audit/consistency" + bad)
        assert response.status_code in (400, 404) and response.get_json()["error"] == "invalid_request"
    assert client.get("/audit/checkpoint/4").status_code == 404


def test_secrets_are_refused_in_audit_details(app: Flask) -> None:
    with app.app_context(), pytest.raises(ValueError):
        audit.append("login", password="hunter2hunter2")


def test_a_failed_unit_of_work_leaves_no_event(app: Flask) -> None:
    with app.app_context():
        with pytest.raises(RuntimeError), unit_of_work():
            audit.append("login", actor="citizen:x")
            raise RuntimeError("the request failed")
        assert get_session().scalar(select(AuditEvent.id)) is None


# ---- many writers, and the partitions (PostgreSQL) -----------------------------------------------

def _append_many(env: dict[str, str], worker: int, units: int) -> None:
    from tests.conftest import make_app

    app = make_app(env)
    rng = random.Random(worker)
    with app.app_context():
        for unit in range(units):
            with unit_of_work():
                for i in range(rng.randint(1, 4)):
                    audit.append("flow", actor=f"worker:{worker}", unit=unit, i=i)


def _checkpoint_loop(env: dict[str, str], passes: int) -> None:
    from tests.conftest import make_app

    app = make_app(env)
    for _ in range(passes):
        result = app.test_cli_runner().invoke(args=["audit", "checkpoint"])
        assert result.exit_code == 0, (result.output, result.exception)


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_concurrent_appends_from_several_processes_and_a_checkpointer(
        app: Flask, backend: dict[str, str]) -> None:
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_append_many, args=(backend, w, 60)) for w in range(4)]
    checkpointers = [context.Process(target=_checkpoint_loop, args=(backend, 15)) for _ in range(2)]
    for p in writers + checkpointers:
        p.start()
    for p in writers + checkpointers:
        p.join(120)
        assert p.exitcode == 0
    checkpoint(app)
    with app.app_context():
        session = get_session()
        total = session.scalar(text("SELECT count(*) FROM audit_event"))
        indexes = list(session.scalars(select(AuditEvent.leaf_index).order_by(AuditEvent.leaf_index)))
        checkpoints = session.scalar(text("SELECT count(*) FROM audit_checkpoint"))
    assert indexes == list(range(total)) and total >= 240
    assert checkpoints >= 2
    code, output = verify(app)
    assert code == 0, output
    assert output.startswith(f"ok ({total} rows")


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_events_land_in_monthly_partitions_and_proofs_span_them(app: Flask) -> None:
    engine = app.extensions["idp.engine"]
    with app.app_context():
        for at in (dt.datetime(2031, 5, 3, tzinfo=dt.UTC), dt.datetime(2031, 6, 30, 23, 59, tzinfo=dt.UTC)):
            with unit_of_work() as session:
                session.connection().execute(AuditEvent.__table__.insert().values(
                    at=at, event="future", actor="system", details={}))
    with engine.connect() as conn:
        where = dict(conn.execute(text("SELECT event, tableoid::regclass::text FROM audit_event")).all())
    assert where["future"] == "audit_event_default"  # no partition for 2031 yet: nothing is lost
    with app.app_context(), unit_of_work() as session:
        made = audit.ensure_partitions(session.connection(), dt.date(2031, 5, 1), ahead=1)
    assert made == ["audit_event_2031_05", "audit_event_2031_06"]
    with engine.connect() as conn:
        where = conn.execute(text("SELECT tableoid::regclass::text FROM audit_event "
                                  "WHERE event = 'future' ORDER BY at")).scalars().all()
    assert where == ["audit_event_2031_05", "audit_event_2031_06"]
    write_events(app, 3)
    checkpoint(app)
    code, output = verify(app)
    assert code == 0, output
    runner = app.test_cli_runner()
    for event_id in leaf_ids(app):
        assert runner.invoke(args=["audit", "prove", str(event_id)]).exit_code == 0


# ---- the hash chain of earlier releases, sealed into the tree ----------------------------------

def _chain_rows(n: int, start: dt.datetime) -> list[dict[str, object]]:
    """Events as the hash-chained log wrote them (that release's canonical content and linking)."""
    import hashlib

    prev, rows = "0" * 64, []
    for i in range(n):
        at = start + dt.timedelta(days=20 * i, milliseconds=i)
        row = {"at": at, "event": "login", "actor": f"citizen:{i}", "citizen_id": None,
               "client_id": None, "ip": "203.0.113.9", "details": {"attempt": i}}
        content = json.dumps({**row, "at": at.isoformat()}, sort_keys=True, separators=(",", ":"),
                             default=str)
        digest = hashlib.sha256((prev + content).encode()).hexdigest()
        rows.append({**row, "prev_hash": prev, "hash": digest})
        prev = digest
    return rows


def _old_table() -> sa.TableClause:
    from idp.models.base import UTCDateTime

    return sa.table("audit_event", *(sa.column(c) for c in ("event", "actor", "citizen_id", "client_id",
                                                            "ip", "prev_hash", "hash")),
                    sa.column("at", UTCDateTime()), sa.column("details", sa.JSON()))


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_migration_seals_the_chain_into_the_tree(kind: str, tmp_path: Path) -> None:
    from alembic import command

    from idp.cli import alembic_config
    from tests.conftest import TEST_SETTINGS, make_app, old_database

    with old_database(kind, tmp_path, "0007_home_and_delivery") as url:
        engine = sa.create_engine(url)
        rows = _chain_rows(5, dt.datetime(2026, 8, 30, 8, 0, tzinfo=dt.UTC))
        with engine.begin() as conn:
            conn.execute(sa.insert(_old_table()), rows)
        command.upgrade(alembic_config(url), "head")
        with engine.connect() as conn:
            moved = conn.execute(text("SELECT id, event, actor FROM audit_event ORDER BY id")).all()
            if kind == "postgres":
                homes = conn.execute(text("SELECT DISTINCT tableoid::regclass::text FROM audit_event "
                                          "WHERE event = 'login'")).scalars().all()
                assert sorted(homes) == ["audit_event_2026_08", "audit_event_2026_09",
                                         "audit_event_2026_10", "audit_event_2026_11"]
        engine.dispose()
        assert [r.actor for r in moved[:5]] == [f"citizen:{i}" for i in range(5)]
        assert moved[:5] == sorted(moved[:5]) and moved[5].event == "audit_chain_sealed"

        env = {"IDP_INSTANCE_PATH": str(tmp_path / "instance"), **TEST_SETTINGS,
               "IDP_DATABASE_URL": url, "IDP_REDIS_URL": ""}
        app = make_app(env)
        checkpoint(app)
        code, output = verify(app)
        assert code == 0 and output.startswith("ok (6 rows"), output
        with app.app_context():
            seal = get_session().get(AuditEvent, moved[5].id)
            assert seal is not None and seal.details["head"] == rows[-1]["hash"]
            assert seal.details["rows"] == 5
        app.extensions["idp.engine"].dispose()


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_migration_refuses_a_broken_chain(kind: str, tmp_path: Path) -> None:
    from alembic import command

    from idp.cli import alembic_config
    from tests.conftest import old_database

    with old_database(kind, tmp_path, "0007_home_and_delivery") as url:
        engine = sa.create_engine(url)
        rows = _chain_rows(3, dt.datetime(2026, 10, 1, tzinfo=dt.UTC))
        rows[1]["actor"] = "citizen:someone-else"  # changed after it was linked
        with engine.begin() as conn:
            conn.execute(sa.insert(_old_table()), rows)
        with pytest.raises(RuntimeError, match="broken at row"):
            command.upgrade(alembic_config(url), "head")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == \
                "0007_home_and_delivery"
            assert conn.execute(text("SELECT count(*) FROM audit_event")).scalar() == 3
        engine.dispose()


def test_a_subtree_planted_past_the_tree_is_refused_and_reported(app: Flask) -> None:
    write_events(app, 300, per_unit=100)
    checkpoint(app)  # 300 leaves: the first 256-leaf block is stored, the second is not complete
    with app.extensions["idp.engine"].begin() as conn:
        conn.execute(AuditNode.__table__.insert().values(level=8, index=1, hash=b"\x00" * 32))
    code, output = verify(app)
    assert code == 1 and "stored subtree 8/1 reaches beyond the tree" in output
    write_events(app, 1)
    refused = app.test_cli_runner().invoke(args=["audit", "checkpoint"])
    assert refused.exit_code == 1 and "beyond the signed size" in refused.output


# ---- the checkpointer's passes ---------------------------------------------------------------------

def _statements(engine: sa.Engine, with_parameters: list[tuple[str, Any]] | None = None
                ) -> tuple[list[str], object]:
    seen: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, parameters: Any, *_args: object) -> None:
        seen.append(statement)
        if with_parameters is not None:
            with_parameters.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", record)
    return seen, record


def test_a_pass_reads_back_none_of_the_hashes_it_computed(app: Flask) -> None:
    write_events(app, 5)
    checkpoint(app)
    write_events(app, 600, per_unit=100)  # completes 256-leaf blocks 0 and 1 and their parent
    engine = app.extensions["idp.engine"]
    sent: list[tuple[str, Any]] = []
    _seen, record = _statements(engine, sent)
    try:
        assert "605 events (+600)" in checkpoint(app)
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    leaf_reads = [p for s, p in sent if s.lstrip().startswith("SELECT audit_event.leaf_hash")]
    # Only the 5 leaves signed before: once to check the signed tree, once to complete block 0;
    # each read's range (leaf_index >= start AND leaf_index < end) ends at 5 at most.
    bounds = [list(p.values()) if isinstance(p, dict) else list(p) for p in leaf_reads]
    assert len(leaf_reads) <= 2 and all(max(b) <= 5 for b in bounds), leaf_reads
    code, output = verify(app)
    assert code == 0 and output.startswith("ok (605 rows, 2 checkpoints"), output


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_an_event_deleted_while_it_is_folded_is_never_signed_over(app: Flask) -> None:
    write_events(app, 3)
    checkpoint(app)
    write_events(app, 3)
    engine = app.extensions["idp.engine"]
    with app.app_context():
        victim = get_session().scalar(select(sa.func.max(AuditEvent.id)))

    def delete_first(conn: sa.Connection, _cursor: object, statement: str, *_args: object) -> None:
        if statement.lstrip().startswith("UPDATE audit_event") and "SET leaf_index" in statement:
            with engine.connect() as other:  # another writer, between the read and the update
                other.execute(AuditEvent.__table__.delete().where(AuditEvent.id == victim))
                other.commit()

    sa.event.listen(engine, "before_cursor_execute", delete_first)
    try:
        refused = app.test_cli_runner().invoke(args=["audit", "checkpoint"])
    finally:
        sa.event.remove(engine, "before_cursor_execute", delete_first)
    assert refused.exit_code == 1 and "vanished while being folded" in refused.output
    with app.app_context():
        assert get_session().scalar(select(sa.func.max(AuditCheckpoint.tree_size))) == 3


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)  # SQLite's key is the id alone
def test_an_event_slipped_in_under_the_id_of_one_in_the_tree_is_never_signed_over(app: Flask) -> None:
    """PostgreSQL's key is (id, at): a row with a folded event's id and another time can be
    inserted, and would give one id two leaves."""
    write_events(app, 3)
    checkpoint(app)
    write_events(app, 2)
    first = leaf_ids(app)[0]
    with app.extensions["idp.engine"].begin() as conn:
        conn.execute(AuditEvent.__table__.insert().values(
            id=first, at=dt.datetime(2026, 1, 2, tzinfo=dt.UTC), event="login", actor="citizen:x",
            details={}))
    refused = app.test_cli_runner().invoke(args=["audit", "checkpoint"])
    assert refused.exit_code == 1 and "has the id of one already in it" in refused.output
    with app.app_context():
        assert get_session().scalar(select(sa.func.max(AuditCheckpoint.tree_size))) == 3


def _partition_exists(app: Flask, month: dt.date) -> bool:
    with app.extensions["idp.engine"].connect() as conn:
        return conn.execute(text("SELECT to_regclass(:n)"),
                            {"n": audit.partition_name(month)}).scalar() is not None


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_the_checkpointer_makes_the_coming_months_partitions_as_the_days_go_by(app: Flask) -> None:
    from idp import clock
    from idp.cli import audit_signer
    from idp.models.base import utcnow

    with app.app_context():
        checkpointer = audit.Checkpointer(audit_signer())

    def one_pass() -> None:
        with app.app_context(), unit_of_work() as session:
            assert checkpointer.fold(session) is not None

    def months(day: dt.date) -> list[dt.date]:
        return [dt.date(day.year + (day.month + n - 1) // 12, (day.month + n - 1) % 12 + 1, 1)
                for n in range(3)]

    today = utcnow().date()
    coming = months(today + dt.timedelta(days=400))
    assert not any(_partition_exists(app, month) for month in coming)
    try:
        one_pass()  # the first pass makes this month's and the next two
        assert all(_partition_exists(app, month) for month in months(today))
        engine = app.extensions["idp.engine"]
        seen, record = _statements(engine)
        try:
            one_pass()  # the same day: not again
        finally:
            sa.event.remove(engine, "before_cursor_execute", record)
        assert not [s for s in seen if "to_regclass" in s]

        clock.advance(400 * 86400)  # the process keeps running into another day
        one_pass()
        assert all(_partition_exists(app, month) for month in coming)
        write_events(app, 1)
        with app.extensions["idp.engine"].connect() as conn:
            home = conn.execute(text("SELECT tableoid::regclass::text FROM audit_event "
                                     "ORDER BY id DESC LIMIT 1")).scalar()
        assert home == audit.partition_name(coming[0])  # not the default partition
    finally:
        clock.reset()
