"""The machine path's first half through the local HTTP front: every rejection, nothing stored."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest

from gpuproof.api.wiring import machine_services
from gpuproof.protocol.keys import SigningKey
from gpuproof.protocol.report import BenchmarkReport, HostInfo, Integrity, Inventory, SignedReport

from .api_client import OWNER, RawApi, Tables, registration

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def api(local_stack: Any) -> RawApi:
    return RawApi(local_stack.api_url)


@pytest.fixture(scope="module")
def tables(local_stack: Any) -> Tables:
    return Tables(
        {
            "machines": local_stack.table_name("MachinesTable"),
            "challenges": local_stack.table_name("ChallengesTable"),
            "reports": local_stack.table_name("ReportsTable"),
            "nonces": local_stack.table_name("RequestNoncesTable"),
        }
    )


def report_for(key: SigningKey, challenge: dict[str, Any], **changes: Any) -> SignedReport:
    host = HostInfo(
        cpu_model="test cpu",
        cpu_cores=2,
        cpu_mhz=2000,
        ram_bytes=8 << 30,
        sys_disk_bytes=100 << 30,
        data_disk_bytes=0,
        os="Linux",
        kernel="6.1",
    )
    fields: dict[str, Any] = dict(
        machine_id=key.public_hex,
        challenge_id=challenge["challenge_id"],
        challenge_nonce=challenge["nonce"],
        probe_version="test",
        created_at=int(time.time()),
        inventory=Inventory(backend="cpu", host=host),
        integrity=Integrity(),
    )
    fields.update(changes)
    return SignedReport.sign(BenchmarkReport(**fields), key)


def submission(challenge: dict[str, Any], signed: SignedReport) -> dict[str, Any]:
    return {"challenge_id": challenge["challenge_id"], "signed_report": signed.model_dump(mode="json")}


def codes(reply: Any) -> list[str]:
    return [r["code"] for r in reply.body["reasons"]]


def registered(api: RawApi) -> SigningKey:
    key = SigningKey.generate()
    assert api.register(key).status == 201
    return key


def challenged(api: RawApi) -> tuple[SigningKey, dict[str, Any]]:
    key = registered(api)
    reply = api.challenge(key)
    assert reply.status == 201, reply.body
    return key, reply.body


# -- the happy path ---------------------------------------------------------------------------


def test_register_challenge_submit_and_status(api: RawApi, tables: Tables) -> None:
    key = SigningKey.generate()
    reply = api.register(key)
    assert reply.status == 201
    assert reply.body["state"] == "registered" and reply.body["owner"] == OWNER
    ch = api.challenge(key)
    assert ch.status == 201
    assert len(bytes.fromhex(ch.body["nonce"])) == 32
    assert ch.body["expires_at"] > ch.body["issued_at"]
    signed = report_for(key, ch.body)
    sub, _, _ = api.signed(key, "POST", f"/machines/{key.public_hex}/reports", submission(ch.body, signed))
    assert sub.status == 202, sub.body
    status = api.send("GET", f"/machines/{key.public_hex}")
    assert status.status == 200
    assert status.body["machine"]["state"] in {"submitted", "auto_verified", "refused"}
    assert [r["challenge_id"] for r in status.body["reports"]] == [ch.body["challenge_id"]]
    stored = api.send("GET", f"/machines/{key.public_hex}/reports/{ch.body['challenge_id']}")
    assert stored.status == 200
    # Byte for byte what the machine signed: the stored copy still verifies.
    assert SignedReport.model_validate(stored.body["signed_report"]).verifies()
    foot = tables.footprint(key.public_hex)
    assert foot["reports"] == [ch.body["challenge_id"]]
    assert foot["challenges"] == [(ch.body["challenge_id"], "used")]
    assert len(foot["nonces"]) == 3


def test_challenge_nonces_are_fresh(api: RawApi) -> None:
    key = registered(api)
    nonces = {api.challenge(key).body["nonce"] for _ in range(3)}
    assert len(nonces) == 3


def test_unknown_machine_status_is_404(api: RawApi) -> None:
    reply = api.send("GET", f"/machines/{'ab' * 32}")
    assert reply.status == 404 and reply.body["code"] == "unknown_machine"


# -- envelope rejections: nothing is parsed or stored -------------------------------------------


def test_missing_signature(api: RawApi, tables: Tables) -> None:
    key = SigningKey.generate()
    reply = api.send("POST", "/machines", json.dumps(registration(key)).encode())
    assert reply.status == 401
    assert set(codes(reply)) == {"signature_missing"} and len(codes(reply)) == 3
    assert tables.footprint(key.public_hex)["machine"] is None


def test_forged_signature(api: RawApi, tables: Tables) -> None:
    key = SigningKey.generate()
    body = json.dumps(registration(key)).encode()
    from gpuproof.protocol.httpsig import sign_request

    headers = sign_request(key, "POST", "/machines", body)
    forged = bytearray(base64.b64decode(headers["signature"][len("sig1=:") : -1]))
    forged[0] ^= 1
    headers["signature"] = "sig1=:" + base64.b64encode(bytes(forged)).decode() + ":"
    reply = api.send("POST", "/machines", body, headers)
    assert reply.status == 401 and reply.body["code"] == "signature_invalid"
    assert tables.footprint(key.public_hex) == {
        "machine": None,
        "challenges": [],
        "reports": [],
        "nonces": [],
    }


def test_signature_by_other_key_in_keyid(api: RawApi, tables: Tables) -> None:
    """A signature made with one key but claiming another keyid is forged."""
    key, other = SigningKey.generate(), SigningKey.generate()
    body = json.dumps(registration(key)).encode()
    from gpuproof.protocol.httpsig import sign_request

    headers = sign_request(other, "POST", "/machines", body)
    headers["signature-input"] = headers["signature-input"].replace(other.public_hex, key.public_hex)
    reply = api.send("POST", "/machines", body, headers)
    assert reply.status == 401 and reply.body["code"] == "signature_invalid"
    assert tables.footprint(key.public_hex)["machine"] is None


def test_body_changed_after_signing(api: RawApi, tables: Tables) -> None:
    key = SigningKey.generate()
    body = json.dumps(registration(key)).encode()
    from gpuproof.protocol.httpsig import sign_request

    headers = sign_request(key, "POST", "/machines", body)
    tampered = body.replace(b"europe", b"japan")
    reply = api.send("POST", "/machines", tampered, headers)
    assert reply.status == 401 and reply.body["code"] == "content_digest_mismatch"
    assert tables.footprint(key.public_hex)["machine"] is None


def test_stale_timestamp(api: RawApi, tables: Tables) -> None:
    key = SigningKey.generate()
    reply, _, _ = api.signed(key, "POST", "/machines", registration(key), created=int(time.time()) - 3600)
    assert reply.status == 401 and reply.body["code"] == "timestamp_stale"
    future, _, _ = api.signed(key, "POST", "/machines", registration(key), created=int(time.time()) + 3600)
    assert future.status == 401 and future.body["code"] == "timestamp_stale"
    assert tables.footprint(key.public_hex)["machine"] is None


def test_oversize_body(api: RawApi, tables: Tables) -> None:
    key = SigningKey.generate()
    doc = registration(key) | {"padding": "x" * (1024 * 1024)}
    reply, _, _ = api.signed(key, "POST", "/machines", doc)
    assert reply.status == 413 and reply.body["code"] == "body_too_large"
    assert tables.footprint(key.public_hex)["machine"] is None


def test_malformed_json(api: RawApi, tables: Tables) -> None:
    key = SigningKey.generate()
    reply, _, _ = api.signed(key, "POST", "/machines", raw=b'{"machine_id": ')
    assert reply.status == 400 and reply.body["code"] == "malformed_json"
    assert tables.footprint(key.public_hex)["nonces"] == []


def test_schema_errors_list_every_field(api: RawApi, tables: Tables) -> None:
    key = SigningKey.generate()
    doc = registration(key) | {"region": "atlantis", "owner": "not-an-address", "extra": 1}
    reply, _, _ = api.signed(key, "POST", "/machines", doc)
    assert reply.status == 422 and reply.body["code"] == "schema_invalid"
    fields = {r["field"] for r in reply.body["reasons"]}
    assert {"region", "owner", "extra"} <= fields
    assert tables.footprint(key.public_hex) == {
        "machine": None,
        "challenges": [],
        "reports": [],
        "nonces": [],
    }


# -- domain rejections ----------------------------------------------------------------------------


def test_replayed_registration(api: RawApi, tables: Tables) -> None:
    key = SigningKey.generate()
    first, headers, body = api.signed(key, "POST", "/machines", registration(key))
    assert first.status == 201
    before = tables.footprint(key.public_hex)
    replay = api.send("POST", "/machines", body, headers)
    assert replay.status == 409
    assert set(codes(replay)) == {"replayed_nonce", "machine_exists"}
    assert tables.footprint(key.public_hex) == before


BOB = "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty"
ALICE_POLKADOT = "15oF4uVJwmo4TdGW7VfQxNLavjCXviqxT9S1MgbjMNHr6Sp5"  # OWNER's key, network prefix 0


def test_owner_address_with_a_broken_checksum_is_refused(api: RawApi, tables: Tables) -> None:
    key = SigningKey.generate()
    broken = OWNER[:-1] + ("R" if OWNER[-1] != "R" else "S")  # base58, right length, wrong checksum
    reply, _, _ = api.signed(key, "POST", "/machines", registration(key, owner=broken))
    assert reply.status == 422 and reply.body["code"] == "schema_invalid", reply.body
    owner_reason = next(r for r in reply.body["reasons"] if r["field"] == "owner")
    assert "checksum" in owner_reason["message"]
    assert tables.footprint(key.public_hex)["machine"] is None


def test_registration_naming_another_owner_is_refused(api: RawApi, tables: Tables) -> None:
    key = registered(api)
    before = tables.footprint(key.public_hex)
    reply, _, _ = api.signed(key, "POST", "/machines", registration(key, owner=BOB))
    assert reply.status == 409 and codes(reply) == ["machine_owner_mismatch"], reply.body
    assert OWNER in reply.body["message"] and BOB in reply.body["message"]
    assert tables.footprint(key.public_hex)["machine"] == before["machine"]
    # the same owner's key under another network prefix is the same owner: only machine_exists
    same, _, _ = api.signed(key, "POST", "/machines", registration(key, owner=ALICE_POLKADOT))
    assert same.status == 409 and codes(same) == ["machine_exists"], same.body


def test_replayed_challenge_request(api: RawApi, tables: Tables) -> None:
    key = registered(api)
    path = f"/machines/{key.public_hex}/challenges"
    first, headers, body = api.signed(key, "POST", path, {"gpu_count": 0})
    assert first.status == 201
    before = tables.footprint(key.public_hex)
    replay = api.send("POST", path, body, headers)
    assert replay.status == 409 and replay.body["code"] == "replayed_nonce"
    assert tables.footprint(key.public_hex) == before


def test_bad_bond_signature(api: RawApi, tables: Tables) -> None:
    key = SigningKey.generate()
    doc = registration(key, owner=OWNER) | {"bond_signature": SigningKey.generate().sign(b"x").hex()}
    reply, _, _ = api.signed(key, "POST", "/machines", doc)
    assert reply.status == 403 and reply.body["code"] == "bond_signature_invalid"
    assert tables.footprint(key.public_hex)["nonces"] == []


def test_registration_signed_by_other_key(api: RawApi, tables: Tables) -> None:
    key, other = SigningKey.generate(), SigningKey.generate()
    reply, _, _ = api.signed(other, "POST", "/machines", registration(key))
    assert reply.status == 403 and reply.body["code"] == "key_mismatch"
    assert tables.footprint(key.public_hex)["machine"] is None
    assert tables.footprint(other.public_hex)["nonces"] == []


def test_challenge_for_unknown_machine(api: RawApi, tables: Tables) -> None:
    key = SigningKey.generate()
    reply = api.challenge(key)
    assert reply.status == 404 and reply.body["code"] == "unknown_machine"
    assert tables.footprint(key.public_hex) == {
        "machine": None,
        "challenges": [],
        "reports": [],
        "nonces": [],
    }


def test_challenge_with_wrong_key(api: RawApi, tables: Tables) -> None:
    key, other = registered(api), SigningKey.generate()
    before = tables.footprint(key.public_hex)
    reply = api.challenge(other, machine_id=key.public_hex)
    assert reply.status == 403 and reply.body["code"] == "key_mismatch"
    assert tables.footprint(key.public_hex) == before


def test_report_from_unknown_machine(api: RawApi, tables: Tables) -> None:
    key, ch = challenged(api)
    stranger = SigningKey.generate()
    signed = report_for(stranger, ch)
    reply, _, _ = api.signed(
        stranger, "POST", f"/machines/{stranger.public_hex}/reports", submission(ch, signed)
    )
    assert reply.status == 404
    assert codes(reply)[0] == "unknown_machine" and "challenge_machine_mismatch" in codes(reply)
    assert tables.footprint(stranger.public_hex) == {
        "machine": None,
        "challenges": [],
        "reports": [],
        "nonces": [],
    }
    assert tables.footprint(key.public_hex)["reports"] == []


def test_report_signed_with_wrong_key(api: RawApi, tables: Tables) -> None:
    key, ch = challenged(api)
    other = SigningKey.generate()
    before = tables.footprint(key.public_hex)
    reply, _, _ = api.signed(
        other, "POST", f"/machines/{key.public_hex}/reports", submission(ch, report_for(key, ch))
    )
    assert reply.status == 403 and reply.body["code"] == "key_mismatch"
    # The report itself signed by another key than the machine it names:
    forged = SignedReport(report=report_for(key, ch).report, signature=other.sign(b"x").hex())
    reply2, _, _ = api.signed(key, "POST", f"/machines/{key.public_hex}/reports", submission(ch, forged))
    assert reply2.status == 403 and reply2.body["code"] == "report_signature_invalid"
    assert tables.footprint(key.public_hex) == before


def test_report_answering_another_nonce(api: RawApi, tables: Tables) -> None:
    key, ch = challenged(api)
    before = tables.footprint(key.public_hex)
    signed = report_for(key, ch, challenge_nonce="00" * 32)
    reply, _, _ = api.signed(key, "POST", f"/machines/{key.public_hex}/reports", submission(ch, signed))
    assert reply.status == 422 and reply.body["code"] == "report_challenge_mismatch"
    assert tables.footprint(key.public_hex) == before


def test_used_challenge(api: RawApi, tables: Tables, local_stack: Any) -> None:
    key, ch = challenged(api)
    path = f"/machines/{key.public_hex}/reports"
    assert api.signed(key, "POST", path, submission(ch, report_for(key, ch)))[0].status == 202
    local_stack.drain()  # let the verify worker finish moving the machine on
    before = tables.footprint(key.public_hex)
    again, _, _ = api.signed(key, "POST", path, submission(ch, report_for(key, ch)))
    assert again.status == 409 and again.body["code"] == "challenge_used"
    assert tables.footprint(key.public_hex) == before


def test_superseded_challenge(api: RawApi, tables: Tables) -> None:
    key, first = challenged(api)
    assert api.challenge(key).status == 201
    before = tables.footprint(key.public_hex)
    reply, _, _ = api.signed(
        key, "POST", f"/machines/{key.public_hex}/reports", submission(first, report_for(key, first))
    )
    assert reply.status == 409 and reply.body["code"] == "challenge_used"
    assert tables.footprint(key.public_hex) == before


def test_expired_challenge(api: RawApi, tables: Tables, monkeypatch: pytest.MonkeyPatch) -> None:
    key = registered(api)
    monkeypatch.setenv("CHALLENGE_TTL_S", "1")
    machine_services.cache_clear()
    try:
        ch = api.challenge(key).body
    finally:
        monkeypatch.undo()
        machine_services.cache_clear()
    time.sleep(1.5)
    before = tables.footprint(key.public_hex)
    reply, _, _ = api.signed(
        key, "POST", f"/machines/{key.public_hex}/reports", submission(ch, report_for(key, ch))
    )
    assert reply.status == 410 and reply.body["code"] == "challenge_expired"
    assert tables.footprint(key.public_hex) == before


def test_replayed_report_submission(api: RawApi, tables: Tables, local_stack: Any) -> None:
    key, ch = challenged(api)
    path = f"/machines/{key.public_hex}/reports"
    first, headers, body = api.signed(key, "POST", path, submission(ch, report_for(key, ch)))
    assert first.status == 202
    local_stack.drain()
    before = tables.footprint(key.public_hex)
    replay = api.send("POST", path, body, headers)
    assert replay.status == 409
    assert {"replayed_nonce", "challenge_used"} <= set(codes(replay))
    assert tables.footprint(key.public_hex) == before
