"""Presence waves through the real adapters (DynamoDB on moto) with a clock the test sets: the
schedule stored once and conditionally, a check announced only `lead_s` before it opens, fetched at
its opening (nothing written; the same nonce on a repeated fetch), committed (the open check
written then), its openings verified; a wave not answered counted as a miss at the next look
after its window, offline; a failure in shadow mode recorded and nothing taken.

The machines here are written as published by the store's own functions (mark_machine_published),
then taken out of the ByLivenessDue index, so the session stack's sweeper (same moto backend, real
clock) never looks at them; the waves live in a table of this test's own."""

from __future__ import annotations

import dataclasses
import time
import uuid
from typing import Any

import boto3
import pytest

from gpuproof.adapters.dynamo import DynamoMachineStore, mark_machine_published, scored_of
from gpuproof.adapters.tables import MachineModel
from gpuproof.adapters.waves import DynamoWaveStore
from gpuproof.claim import Claim
from gpuproof.config import LivenessPolicy, PresencePolicy, Settings
from gpuproof.errors import Rejection
from gpuproof.logic import presence
from gpuproof.logic.liveness import _look_at
from gpuproof.logic.machines import Services, record_heartbeat
from gpuproof.logic.records import Machine
from gpuproof.logic.states import MachineState
from gpuproof.logic.waves import Wave, WaveSchedule, ensure_waves
from gpuproof.protocol.httpsig import SignedRequest
from gpuproof.protocol.keys import SigningKey
from gpuproof.protocol.proof import (
    GpuPairs,
    NumpyExecutor,
    ProofParams,
    Prover,
    SignedCommitment,
    ThroughputProof,
)
from gpuproof.protocol.telemetry import Heartbeat

POLICY = PresencePolicy(6, 3, 180, 5.0, 120.0, enforce=True, miss_window=10)
LIVE = LivenessPolicy(1800, 86400)


class SetClock:
    def __init__(self, t: float) -> None:
        self.t = t

    def now(self) -> float:
        return self.t


@pytest.fixture
def waves_table(moto_server: Any) -> DynamoWaveStore:
    name = f"presence-waves-{uuid.uuid4().hex[:8]}"
    boto3.client("dynamodb").create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "machine_id", "AttributeType": "S"},
            {"AttributeName": "round", "AttributeType": "N"},
        ],
        KeySchema=[
            {"AttributeName": "machine_id", "KeyType": "HASH"},
            {"AttributeName": "round", "KeyType": "RANGE"},
        ],
    )
    return DynamoWaveStore(name, "us-east-1")


def scored_machine(store: DynamoMachineStore, key: SigningKey, now: float) -> tuple[str, SigningKey]:
    """A published machine that only this test looks at. Publishing puts it in the ByLivenessDue
    index, where the session stack's sweeper (same moto tables, one tick a second) may look at it
    before it is taken out; such a machine is set aside and another one made."""
    for _ in range(5):
        mid = _published(store, key, now)
        time.sleep(2.5)  # a look of the session sweeper already under way ends meanwhile
        m = store.get_machine(mid)
        if m is not None and m.presence is None and MachineModel.get(mid).liveness is None:
            return mid, key
        key = SigningKey.generate()
    raise AssertionError("the session sweeper looked at every machine made for this test")


def _published(store: DynamoMachineStore, key: SigningKey, now: float) -> str:
    mid = key.public_hex
    owner = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
    store.register(
        Machine(mid, owner, "europe", MachineState.confirmed, now, now),
        SignedRequest(keyid=mid, created=int(now), nonce=f"register-{uuid.uuid4().hex}"),
    )
    MachineModel(mid).update(actions=[MachineModel.claim.set(Claim(None, 0).as_dict())])
    info = {"machine_id": mid, "gpu_type": "cpu", "gpu_num": 0, "calc_point": 1, "is_support": True}
    settings = Settings.from_env()
    assert mark_machine_published(
        settings.machines_table, settings.region, mid, "confirmed", now, scored_of(f"{mid}:1", 1, info)
    )
    # Out of the ByLivenessDue index: only this test looks at it (the session sweeper never does).
    MachineModel(mid).update(actions=[MachineModel.liveness.remove()])
    return mid


def signed(mid: str) -> SignedRequest:
    return SignedRequest(keyid=mid, created=int(time.time()), nonce=uuid.uuid4().hex)


def test_the_schedule_is_stored_once_and_conditionally(waves_table: DynamoWaveStore) -> None:
    now = time.time()
    first = ensure_waves(waves_table, now, POLICY)
    stored = waves_table.load()
    assert stored is not None and stored.version == 1 and stored.waves == first
    assert first[0].at >= now + POLICY.lead_s + POLICY.cache_s
    assert ensure_waves(waves_table, now + 1, POLICY) == first  # nothing to draw: no write
    assert waves_table.load() == stored
    # A tick that read the item before another wrote it loses, and takes the stored schedule.
    other = WaveSchedule((*first, Wave("extra", first[-1].at + 9999, "33" * 32)), stored.drawn_for, 1)
    assert waves_table.save(other, stored)
    assert not waves_table.save(dataclasses.replace(other, waves=first), stored)
    assert waves_table.load() == dataclasses.replace(other, version=2)


def test_a_check_is_announced_fetched_committed_and_passed_and_a_missed_wave_counted(
    moto_server: Any, waves_table: DynamoWaveStore
) -> None:
    store = DynamoMachineStore(Settings.from_env())
    key = SigningKey.generate()
    t0 = time.time()
    mid, key = scored_machine(store, key, t0)
    clock = SetClock(t0)
    svc = Services(
        store=store, queue=None, clock=clock, challenge_ttl_s=900, presence=POLICY, waves=waves_table
    )  # type: ignore[arg-type]

    def look() -> str:
        m = store.get_machine(mid)
        assert m is not None
        return _look_at(store, m, clock.t, LIVE, POLICY, waves_table.waves(clock.t)).outcome

    def beat() -> dict[str, Any] | None:
        hb = Heartbeat(machine_id=mid, sent_at=int(time.time()), backend="cpu", host={})
        return record_heartbeat(svc, signed(mid), mid, hb).presence

    assert look() == "online"  # the first look: watched from now on
    waves = ensure_waves(waves_table, clock.t, POLICY)
    wave = waves[0]
    m = store.get_machine(mid)
    assert m is not None
    slot = presence.slot_of(m, wave, POLICY)
    assert slot is not None
    clock.t = slot.opens_at - POLICY.lead_s - 1
    assert beat() is None  # not yet: the wave is the service's secret until lead_s before
    with pytest.raises(Rejection) as early:  # nor can its check be fetched before it opens
        presence.fetch_presence(svc, signed(mid), mid, slot.check_id, None)
    assert early.value.reasons[0].code == "presence_too_early"
    clock.t = slot.opens_at - POLICY.lead_s
    assert beat() == {"check_id": slot.check_id, "opens_at": slot.opens_at, "fetch_by": slot.opens_at + 5.0}
    told = store.get_machine(mid)
    assert told is not None and (told.presence or {}).get("open") is None  # nothing written per machine

    clock.t = slot.opens_at + 0.1
    check = presence.fetch_presence(svc, signed(mid), mid, slot.check_id, clock.t)
    again = presence.fetch_presence(svc, signed(mid), mid, slot.check_id, clock.t + 0.2)
    assert again["nonce"] == check["nonce"] and check["opens_at"] == slot.opens_at
    fetched = store.get_machine(mid)
    assert fetched is not None and fetched.presence == told.presence  # the fetch wrote nothing
    params = [ProofParams.model_validate(p) for p in check["params"]]
    prover = Prover(bytes.fromhex(check["nonce"]), mid, slot.check_id, params, NumpyExecutor())
    sc = SignedCommitment.sign(prover.run(), key)
    clock.t += 0.5
    receipt = presence.presence_commitment(svc, signed(mid), mid, slot.check_id, sc, clock.t)
    assert beat() is None  # committed: no longer announced
    with pytest.raises(Rejection) as twice:
        presence.presence_commitment(svc, signed(mid), mid, slot.check_id, sc, clock.t)
    assert twice.value.reasons[0].code == "commitment_exists"
    pairs = [GpuPairs.model_validate(p) for p in receipt["pairs"]]
    proof = ThroughputProof(
        commitment=sc.commitment, signature=sc.signature, pairs=pairs, openings=prover.open(pairs)
    )
    clock.t += 0.5
    assert presence.presence_proof(svc, signed(mid), mid, slot.check_id, proof)["result"] == "passed"
    shown = presence.presence_summary(store.get_machine(mid))  # type: ignore[arg-type]
    assert shown is not None
    assert (shown["checks"], shown["passed"], shown["misses_in_window"], shown["window_checks"]) == (
        1,
        1,
        0,
        1,
    )

    # The next wave is not answered: a miss, counted at the first look after its window, offline.
    clock.t = wave.at + POLICY.min_gap_s
    waves = ensure_waves(waves_table, clock.t, POLICY)
    later = next(w for w in waves if w.at > wave.at)
    m = store.get_machine(mid)
    assert m is not None
    nxt = presence.slot_of(m, later, POLICY)
    assert nxt is not None
    clock.t = nxt.opens_at + 5.0 + float(params[0].deadline_s) + 120.0 + 1
    assert look() == "offline"
    m = store.get_machine(mid)
    assert m is not None and m.state == MachineState.offline
    assert [r["code"] for r in m.state_reasons] == ["presence_missed"]
    shown = presence.presence_summary(m)
    assert shown is not None and (shown["missed"], shown["misses_in_window"], shown["window_checks"]) == (
        1,
        1,
        2,
    )


def test_a_failure_in_shadow_mode_is_recorded_and_takes_nothing(
    moto_server: Any, waves_table: DynamoWaveStore
) -> None:
    store = DynamoMachineStore(Settings.from_env())
    shadow = dataclasses.replace(POLICY, enforce=False)
    key = SigningKey.generate()
    t0 = time.time()
    mid, key = scored_machine(store, key, t0)
    clock = SetClock(t0)
    svc = Services(
        store=store, queue=None, clock=clock, challenge_ttl_s=900, presence=shadow, waves=waves_table
    )  # type: ignore[arg-type]
    m = store.get_machine(mid)
    assert m is not None
    _look_at(store, m, t0, LIVE, shadow, ())
    wave = ensure_waves(waves_table, t0, shadow)[0]
    m = store.get_machine(mid)
    assert m is not None
    slot = presence.slot_of(m, wave, shadow)
    assert slot is not None
    clock.t = slot.opens_at + 0.1
    check = presence.fetch_presence(svc, signed(mid), mid, slot.check_id, clock.t)
    params = [ProofParams.model_validate(p) for p in check["params"]]
    sc = SignedCommitment.sign(
        Prover(bytes.fromhex(check["nonce"]), mid, slot.check_id, params, NumpyExecutor()).run(), key
    )
    clock.t = late = slot.opens_at + 5.0 + float(params[0].deadline_s) + 1  # after the limit
    with pytest.raises(Rejection) as failed:
        presence.presence_commitment(svc, signed(mid), mid, slot.check_id, sc, late)
    assert failed.value.reasons[0].code == "presence_failed"
    m = store.get_machine(mid)
    assert m is not None and m.state == MachineState.published and m.scored is not None
    shown = presence.presence_summary(m)
    assert shown is not None and shown["failed"] == 1 and shown["last"]["result"] == "failed_shadow"
    assert (m.presence or {})["open"] is None
