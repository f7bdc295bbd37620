"""The exactly-once protocol of gpuproof.chain.publisher against in-memory fakes of its ports.

FakeChain keeps a chain's rules that matter here: one extrinsic per (account, nonce), a nonce
below the account's is stale, a pool that deduplicates identical bytes, signatures that differ
on every signing (so a rebuilt extrinsic has another hash).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from gpuproof.chain.adapter import ChainHead, ChainRejected, ChainUnavailable, Inclusion, PreparedExtrinsic
from gpuproof.chain.merkle import blake2_256
from gpuproof.chain.payload import MAGIC
from gpuproof.chain.publisher import (
    FaultPoints,
    InjectedCrash,
    PoisonVerdict,
    PublishServices,
    publish,
    publish_with_retries,
)
from gpuproof.chain.signer import LocalBatchSigner
from gpuproof.chain.store import MalformedVerdict, OutboxConflict, PublishedBatch, StoredVerdict
from tests.unit.test_chain_payload import verdict


@dataclass
class FakeChain:
    account: str = "5Oracle"
    nonce: int = 0
    blocks: list[list[bytes]] = field(default_factory=lambda: [[]])
    pool: dict[str, PreparedExtrinsic] = field(default_factory=dict)
    down: bool = False
    instant: bool = True

    def _up(self) -> None:
        if self.down:
            raise ChainUnavailable("connection refused")

    def head(self) -> ChainHead:
        self._up()
        return ChainHead(
            number=len(self.blocks) - 1, hash=f"0x{len(self.blocks) - 1:064x}", account_nonce=self.nonce
        )

    def prepare(self, payload: bytes) -> PreparedExtrinsic:
        self._up()
        nonce = max([self.nonce, *(p.nonce + 1 for p in self.pool.values())])
        raw = nonce.to_bytes(4, "little") + os.urandom(8) + payload  # a fresh "signature" every time
        number = len(self.blocks) - 1
        return PreparedExtrinsic(
            raw, "0x" + blake2_256(raw).hex(), self.account, nonce, number, number + 64, "X.y"
        )

    def submit(self, prepared: PreparedExtrinsic) -> None:
        self._up()
        if prepared.nonce < self.nonce:
            raise ChainRejected("stale", stale=True)
        if prepared.extrinsic_hash in self.pool:
            raise ChainRejected("already imported", already_known=True)
        self.pool[prepared.extrinsic_hash] = prepared
        if self.instant:
            self.build_block()

    def build_block(self) -> None:
        block = []
        for h, p in sorted(self.pool.items(), key=lambda kv: kv[1].nonce):
            if p.nonce == self.nonce:
                block.append(p.extrinsic)
                self.nonce += 1
            del self.pool[h]
        self.blocks.append(block)

    def find(self, extrinsic_hash: str, from_block: int, to_block: int | None = None) -> Inclusion | None:
        self._up()
        last = len(self.blocks) - 1 if to_block is None else min(to_block, len(self.blocks) - 1)
        for n in range(from_block, last + 1):
            for i, raw in enumerate(self.blocks[n]):
                if "0x" + blake2_256(raw).hex() == extrinsic_hash:
                    return Inclusion(
                        f"0x{n:064x}", n, i, extrinsic_hash, True, [{"event": "System.Remarked"}]
                    )
        return None

    def wait_for(
        self, prepared: PreparedExtrinsic, timeout_s: float, poll_s: float = 0.3
    ) -> Inclusion | None:
        return self.find(prepared.extrinsic_hash, prepared.from_block)

    def batches_with(self, verdict_count_marker: bytes = MAGIC) -> list[bytes]:
        return [raw for block in self.blocks for raw in block if verdict_count_marker in raw]


@dataclass
class FakeOutbox:
    verdicts: dict[str, StoredVerdict] = field(default_factory=dict)
    batches: list[PublishedBatch] = field(default_factory=list)

    def load(self, verdict_ids: Sequence[str]) -> dict[str, StoredVerdict]:
        return {v: self.verdicts[v] for v in verdict_ids if v in self.verdicts}

    def load_all(self, verdict_ids: Sequence[str]) -> dict[str, StoredVerdict | MalformedVerdict]:
        return dict(self.load(verdict_ids))

    def set_publication(
        self,
        changes: Sequence[tuple[str, dict[str, Any] | None, dict[str, Any]]],
        batch: PublishedBatch | None = None,
    ) -> None:
        for vid, expected, _ in changes:
            if vid not in self.verdicts or self.verdicts[vid].publication != expected:
                raise OutboxConflict(vid)
        for vid, _, new in changes:
            old = self.verdicts[vid]
            self.verdicts[vid] = StoredVerdict(old.verdict, json.loads(json.dumps(new)))
        if batch is not None:
            self.batches = [b for b in self.batches if b.position != batch.position] + [batch]


class Clock:
    def now(self) -> float:
        return 1_767_225_600.0


def services(n: int = 3, **kw: Any) -> tuple[PublishServices, FakeChain, FakeOutbox, list[str]]:
    chain, outbox = FakeChain(), FakeOutbox()
    ids = []
    for r in range(n):
        v = verdict(r)
        outbox.verdicts[v.verdict_id] = StoredVerdict(v, None)
        ids.append(v.verdict_id)
    svc = PublishServices(
        chain=chain, outbox=outbox, signer=LocalBatchSigner(), clock=Clock(), faults=FaultPoints(), **kw
    )
    return svc, chain, outbox, ids


def status(outbox: FakeOutbox, vid: str) -> str:
    return str((outbox.verdicts[vid].publication or {}).get("status"))


def test_a_batch_goes_out_as_one_extrinsic_and_is_recorded_on_every_verdict() -> None:
    svc, chain, outbox, ids = services(3)
    outcomes = publish(svc, ids)
    assert all(o.error is None for o in outcomes.values())
    assert len(chain.batches_with()) == 1
    pubs = [outbox.verdicts[v].publication or {} for v in ids]
    assert {p["status"] for p in pubs} == {"published"}
    assert len({p["extrinsic_hash"] for p in pubs}) == 1
    assert [p["leaf_index"] for p in pubs] == [0, 1, 2]
    assert len(outbox.batches) == 1 and outbox.batches[0].verdict_ids == ids
    # publishing again does nothing
    publish(svc, ids)
    assert len(chain.batches_with()) == 1


@pytest.mark.parametrize("point", ["before_submit", "after_submit", "before_record"])
def test_a_crash_anywhere_leaves_exactly_one_copy_after_the_retry(point: str) -> None:
    svc, chain, outbox, ids = services(3)
    svc.faults.arm(point)
    with pytest.raises(InjectedCrash):
        publish(svc, ids)
    assert {status(outbox, v) for v in ids} == {"pending"}
    publish(svc, ids)
    assert {status(outbox, v) for v in ids} == {"published"}
    assert len(chain.batches_with()) == 1
    assert len(outbox.batches) == 1


def test_a_pending_extrinsic_still_in_the_pool_is_not_duplicated() -> None:
    svc, chain, outbox, ids = services(2)
    chain.instant = False
    with pytest.raises(ChainUnavailable):  # NotYetIncluded: submitted, no block yet
        publish(svc, ids)
    assert len(chain.pool) == 1
    with pytest.raises(ChainUnavailable):  # the retry resubmits the same bytes: the pool dedups
        publish(svc, ids)
    assert len(chain.pool) == 1
    chain.build_block()
    publish(svc, ids)
    assert {status(outbox, v) for v in ids} == {"published"}
    assert len(chain.batches_with()) == 1


def test_a_pending_extrinsic_whose_nonce_was_taken_is_rebuilt() -> None:
    svc, chain, outbox, ids = services(2)
    svc.faults.arm("before_submit")
    with pytest.raises(InjectedCrash):
        publish(svc, ids)
    dead = (outbox.verdicts[ids[0]].publication or {})["extrinsic_hash"]
    # another transaction of the oracle account uses nonce 0 before the retry
    chain.submit(chain.prepare(b"something else"))
    publish(svc, ids)
    pubs = [outbox.verdicts[v].publication or {} for v in ids]
    assert {p["status"] for p in pubs} == {"published"}
    assert pubs[0]["extrinsic_hash"] != dead
    assert pubs[0]["nonce"] == 1
    assert len(chain.batches_with()) == 1


def test_the_chain_being_down_is_waited_out_with_backoff() -> None:
    svc, chain, outbox, ids = services(2)
    chain.down = True
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        if len(slept) == 3:
            chain.down = False

    publish_with_retries(svc, ids, budget_s=60, sleep=sleep)
    assert slept == [0.5, 1.0, 2.0]
    assert {status(outbox, v) for v in ids} == {"published"}
    # past the budget the error surfaces (the stream retries the batch later)
    svc2, chain2, outbox2, ids2 = services(1)
    chain2.down = True
    with pytest.raises(ChainUnavailable):
        publish_with_retries(svc2, ids2, budget_s=0.1, sleep=lambda s: None)
    assert outbox2.verdicts[ids2[0]].publication is None


def test_a_malformed_verdict_is_refused_alone() -> None:
    svc, chain, outbox, ids = services(3)
    bad = outbox.verdicts[ids[1]]
    outbox.verdicts[ids[1]] = StoredVerdict(
        verdict(1, upload_info={"machine_id": "zz"}, evidence_digest="nope"), bad.publication
    )
    outcomes = publish(svc, ids)
    assert isinstance(outcomes[ids[1]].error, PoisonVerdict)
    assert status(outbox, ids[0]) == status(outbox, ids[2]) == "published"
    assert outbox.verdicts[ids[1]].publication is None
    assert len(chain.batches_with()) == 1


def test_a_concurrent_publisher_recording_first_is_read_back_not_an_error() -> None:
    """The stream function and `gpuproof-ops republish` can both finish one pending batch."""
    svc, chain, outbox, ids = services(2)
    svc.faults.arm("after_submit")
    with pytest.raises(InjectedCrash):
        publish(svc, ids)  # reserved and submitted: pending

    class RacedOutbox(FakeOutbox):
        def set_publication(
            self,
            changes: Sequence[tuple[str, dict[str, Any] | None, dict[str, Any]]],
            batch: PublishedBatch | None = None,
        ) -> None:
            if batch is not None and not self.batches:  # the other publisher records first
                super().set_publication(changes, batch)
                raise OutboxConflict(changes[0][0])
            super().set_publication(changes, batch)

    raced = RacedOutbox(outbox.verdicts, outbox.batches)
    svc_raced = PublishServices(
        chain=chain, outbox=raced, signer=svc.signer, clock=Clock(), faults=FaultPoints()
    )
    outcomes = publish_with_retries(svc_raced, ids, budget_s=5, sleep=lambda _s: None)
    assert {o.as_dict()["status"] for o in outcomes.values()} == {"published"}
    assert all(o.error is None for o in outcomes.values())
    assert len(chain.batches_with()) == 1 and len(raced.batches) == 1
