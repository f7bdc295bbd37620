"""Measure the on-chain cost of publishing N verdicts on the local chain (docs/chain.md, "Cost").

    python -m gpuproof.chain.measure --verdicts 1000 --batch 10 50 100

Runs the real publisher logic (payload, signature, exactly-once protocol, substrate adapter)
against a fresh Chopsticks chain; the outbox is in memory and the service key a local P-256 key,
so the figures are the chain's and the encoder's, not DynamoDB's or KMS's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import uuid
from collections.abc import Sequence
from typing import Any

from gpuproof.chain.adapter import ChainSettings, SubstrateChain, oracle_keypair
from gpuproof.chain.payload import verdict_record
from gpuproof.chain.publisher import FaultPoints, PublishServices, publish
from gpuproof.chain.signer import LocalBatchSigner
from gpuproof.chain.store import MalformedVerdict, OutboxConflict, PublishedBatch, StoredVerdict
from gpuproof.logic.records import Verdict, VerdictResult


class MemoryOutbox:
    def __init__(self, verdicts: list[Verdict]) -> None:
        self.items = {v.verdict_id: StoredVerdict(v, None) for v in verdicts}
        self.batches: list[PublishedBatch] = []

    def load(self, verdict_ids: Sequence[str]) -> dict[str, StoredVerdict]:
        return {v: self.items[v] for v in verdict_ids if v in self.items}

    def load_all(self, verdict_ids: Sequence[str]) -> dict[str, StoredVerdict | MalformedVerdict]:
        return dict(self.load(verdict_ids))

    def set_publication(
        self,
        changes: Sequence[tuple[str, dict[str, Any] | None, dict[str, Any]]],
        batch: PublishedBatch | None = None,
    ) -> None:
        for vid, expected, _ in changes:
            if self.items[vid].publication != expected:
                raise OutboxConflict(vid)
        for vid, _, new in changes:
            self.items[vid] = StoredVerdict(self.items[vid].verdict, json.loads(json.dumps(new)))
        if batch is not None:
            self.batches.append(batch)


class _Clock:
    def now(self) -> float:
        return time.time()


def sample_verdicts(n: int) -> list[Verdict]:
    out = []
    for i in range(n):
        mid = (uuid.uuid4().hex * 2)[:64]
        out.append(
            Verdict(
                verdict_id=Verdict.id_for(mid, 1),
                machine_id=mid,
                round=1,
                result=VerdictResult.confirmed if i % 5 else VerdictResult.refused,
                upload_info={
                    "machine_id": mid,
                    "gpu_type": "GeForceRTX4090",
                    "gpu_num": 8,
                    "cuda_core": 16384,
                    "gpu_mem": 24,
                    "calc_point": 160000 + i,
                    "sys_disk": 1000,
                    "data_disk": 8000,
                    "cpu_type": "AMD EPYC 7763 64-Core Processor",
                    "cpu_core_num": 128,
                    "cpu_rate": 2450,
                    "mem_num": 1024,
                    "is_support": bool(i % 5),
                },
                committee=[{"account": f"{k:02x}" * 32, "vote": "agreeing"} for k in (1, 2, 3)],
                performance_index=0.98,
                evidence_digest=uuid.uuid4().hex * 2,
                decided_at=time.time(),
            )
        )
    return out


def measure(url: str, secret: str, n: int, batch: int) -> dict[str, Any]:
    verdicts = sample_verdicts(n)
    record_sizes = [len(verdict_record(v).encoded) for v in verdicts]
    chain = SubstrateChain(ChainSettings(node_url=url), secret)
    svc = PublishServices(
        chain=chain, outbox=MemoryOutbox(verdicts), signer=LocalBatchSigner(), clock=_Clock(),
        max_batch=batch, faults=FaultPoints(),
    )  # fmt: skip
    ids = [v.verdict_id for v in verdicts]
    started = time.monotonic()
    per_extrinsic: list[float] = []
    for i in range(0, n, batch):
        t = time.monotonic()
        outcomes = publish(svc, ids[i : i + batch])
        per_extrinsic.append(time.monotonic() - t)
        assert all(o.error is None for o in outcomes.values())
    elapsed = time.monotonic() - started
    out = svc.outbox
    assert isinstance(out, MemoryOutbox)
    payloads = [len(b.payload) for b in out.batches]
    fees = []
    for b in out.batches[:3]:
        inc = chain.find(b.extrinsic_hash, b.block_number, b.block_number)
        if inc is not None:
            fees += [e["attributes"]["amount"] for e in inc.events if e["event"] == "Balances.Withdraw"]
    chain.close()
    return {
        "verdicts": n,
        "batch": batch,
        "extrinsics": len(out.batches),
        "record_bytes_median": statistics.median(record_sizes),
        "payload_bytes_max": max(payloads),
        "bytes_per_verdict_on_chain": round(sum(payloads) / n, 1),
        "seconds_total": round(elapsed, 2),
        "seconds_per_extrinsic_median": round(statistics.median(per_extrinsic), 3),
        "fee_per_extrinsic_planck": fees[:1],
    }


def main(argv: list[str] | None = None) -> None:
    from gpuproof.local.chain import LocalChain

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--verdicts", type=int, default=1000)
    parser.add_argument("--batch", type=int, nargs="+", default=[10, 50, 100])
    args = parser.parse_args(argv)
    secret = "//GpuproofMeasure"  # noqa: S105 - a dev derivation path on a throwaway local chain
    account = "0x" + bytes(oracle_keypair(secret).public_key).hex()
    for batch in args.batch:
        with LocalChain(fund=[account]) as local:
            print(json.dumps(measure(local.url, secret, args.verdicts, batch)), flush=True)


if __name__ == "__main__":
    main()
