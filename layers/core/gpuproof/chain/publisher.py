"""Exactly-once publication of verdicts: a batch of verdicts → one signed extrinsic on chain.

The protocol (docs/chain.md, "Exactly once"):
1. Verdicts without a publication are encoded (a malformed one is refused alone), batched,
   signed by the service key, and an extrinsic is SIGNED with an explicit nonce N of the oracle
   account and a mortal era — but not yet sent.
2. `publication = pending{extrinsic bytes, hash, nonce, era}` is written on every verdict of the
   batch in ONE conditional transaction (each verdict must still have no publication).
3. Only then are the bytes submitted; on inclusion, `publication = published{...}` and the feed
   row are written in one conditional transaction.
A retry that finds `pending` never builds a new extrinsic while the old one could still land: it
reads the account's nonce at the best block B. If nonce(B) ≤ N, nonce N is unused, so the SAME
bytes are resubmitted (the pool deduplicates them; a chain accepts one extrinsic per (account,
nonce)). If nonce(B) > N, N was used: the blocks from the recorded start to B (at most the era)
are searched for the hash: found → recorded as published; absent → some other extrinsic took N,
the pending one can never land, and the verdicts are batched afresh.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from gpuproof.chain.adapter import ChainHead, ChainRejected, ChainUnavailable, Inclusion, PreparedExtrinsic
from gpuproof.chain.payload import PayloadError, SignedBatch, VerdictRecord, build_batch, verdict_record
from gpuproof.chain.signer import BatchSigner
from gpuproof.chain.store import (
    MalformedVerdict,
    OutboxConflict,
    PublishedBatch,
    StoredVerdict,
    canonical,
    position_of,
)

MAX_BATCH = 50


class ChainPort(Protocol):
    @property
    def account(self) -> str: ...

    def head(self) -> ChainHead: ...

    def prepare(self, payload: bytes) -> PreparedExtrinsic: ...

    def submit(self, prepared: PreparedExtrinsic) -> None: ...

    def find(self, extrinsic_hash: str, from_block: int, to_block: int | None = None) -> Inclusion | None: ...

    def wait_for(
        self, prepared: PreparedExtrinsic, timeout_s: float, poll_s: float = 0.3
    ) -> Inclusion | None: ...


class VerdictOutbox(Protocol):
    def load(self, verdict_ids: Sequence[str]) -> dict[str, StoredVerdict]: ...

    def load_all(self, verdict_ids: Sequence[str]) -> dict[str, StoredVerdict | MalformedVerdict]:
        """As `load`, with the items that do not read as verdicts named and their reasons."""

    def set_publication(
        self,
        changes: Sequence[tuple[str, dict[str, Any] | None, dict[str, Any]]],
        batch: PublishedBatch | None = None,
    ) -> None: ...


class Clock(Protocol):
    def now(self) -> float: ...


class PoisonVerdict(Exception):
    """This verdict can never be published as stored (malformed, or refused by the chain).

    `malformed`: the stored item itself is at fault (it does not read or encode as a verdict);
    otherwise the chain refused it."""

    def __init__(self, verdict_id: str, reasons: Sequence[str], malformed: bool = False) -> None:
        self.verdict_id = verdict_id
        self.reasons = list(reasons)
        self.malformed = malformed
        super().__init__(f"{verdict_id}: " + "; ".join(self.reasons))


class NotYetIncluded(ChainUnavailable):
    """Submitted (or pending) but not in a block yet: retry later; the record keeps it pending."""


class InjectedCrash(Exception):
    """Fault injection: the publisher 'dies' at a named point (tests arm it; nothing else does)."""


class InjectedKill(BaseException):
    """Fault injection: the process is killed at a named point. A BaseException, so nothing on the
    way out (Powertools' idempotency and batch layers catch Exception) cleans up: the idempotency
    record stays "in progress" and the publication as far as it got, as after a SIGKILL."""


class FaultPoints:
    """Named points where tests make the publisher crash, e.g. after submitting, before recording."""

    def __init__(self) -> None:
        self._armed: dict[str, tuple[int, bool]] = {}
        self._lock = threading.Lock()

    def arm(self, point: str, times: int = 1, *, kill: bool = False) -> None:
        with self._lock:
            self._armed[point] = (times, kill)

    def disarm(self) -> None:
        with self._lock:
            self._armed.clear()

    def hit(self, point: str) -> None:
        with self._lock:
            left, kill = self._armed.get(point, (0, False))
            if left <= 0:
                return
            self._armed[point] = (left - 1, kill)
        if kill:
            raise InjectedKill(point)
        raise InjectedCrash(point)


faults = FaultPoints()


@dataclass
class PublishServices:
    chain: ChainPort
    outbox: VerdictOutbox
    signer: BatchSigner
    clock: Clock
    inclusion_timeout_s: float = 60.0
    max_batch: int = MAX_BATCH
    faults: FaultPoints = field(default_factory=lambda: faults)


@dataclass
class Outcome:
    """What happened to one verdict: published (with its publication), skipped, or an error."""

    verdict_id: str
    publication: dict[str, Any] | None = None
    error: Exception | None = None

    def as_dict(self) -> dict[str, Any]:
        pub = self.publication or {}
        return {
            "verdict_id": self.verdict_id,
            "status": pub.get("status", "missing"),
            "extrinsic_hash": pub.get("extrinsic_hash"),
            "block_hash": pub.get("block_hash"),
        }


def publish(svc: PublishServices, verdict_ids: Sequence[str]) -> dict[str, Outcome]:
    """Bring every listed verdict to `published` (or report why not). Raises ChainUnavailable when
    the chain cannot be reached, so the caller can back off and call again; safe to call again."""
    stored = svc.outbox.load_all(verdict_ids)
    outcomes: dict[str, Outcome] = {}
    fresh: list[StoredVerdict] = []
    pending: dict[str, list[StoredVerdict]] = {}
    for vid in verdict_ids:
        s = stored.get(vid)
        if s is None:
            outcomes[vid] = Outcome(vid)  # deleted or never written: nothing to publish
            continue
        if isinstance(s, MalformedVerdict):  # fails alone; the others are published
            outcomes[vid] = Outcome(vid, None, PoisonVerdict(vid, s.reasons, malformed=True))
            continue
        pub = s.publication or {}
        status = pub.get("status")
        if status == "published":
            outcomes[vid] = Outcome(vid, pub)
        elif status == "pending":
            pending.setdefault(str(pub["extrinsic_hash"]), []).append(s)
        elif status == "failed":
            outcomes[vid] = Outcome(vid, pub, PoisonVerdict(vid, [str(pub.get("reason"))]))
        else:
            fresh.append(s)
    for group in pending.values():
        revived = _resolve_pending(svc, group[0].publication or {}, outcomes)
        fresh.extend(revived)
    records: list[tuple[StoredVerdict, VerdictRecord]] = []
    for s in fresh:
        try:
            records.append((s, verdict_record(s.verdict)))
        except PayloadError as exc:
            outcomes[s.verdict.verdict_id] = Outcome(
                s.verdict.verdict_id, None, PoisonVerdict(s.verdict.verdict_id, exc.reasons, malformed=True)
            )
    for i in range(0, len(records), svc.max_batch):
        _publish_new(svc, records[i : i + svc.max_batch], outcomes)
    return outcomes


def _publish_new(
    svc: PublishServices, chunk: list[tuple[StoredVerdict, VerdictRecord]], outcomes: dict[str, Outcome]
) -> None:
    batch: SignedBatch = build_batch([r for _, r in chunk], svc.signer, svc.clock.now())
    prepared = svc.chain.prepare(batch.payload)
    ids = [s.verdict.verdict_id for s, _ in chunk]
    pending = canonical(
        {
            "status": "pending",
            "batch_id": batch.batch_id.hex(),
            "extrinsic_hash": prepared.extrinsic_hash,
            "extrinsic": prepared.extrinsic.hex(),
            "account": prepared.account,
            "nonce": prepared.nonce,
            "from_block": prepared.from_block,
            "mortal_until": prepared.mortal_until,
            "call": prepared.call,
            "merkle_root": batch.merkle_root.hex(),
            "payload_bytes": len(batch.payload),
            "verdicts": ids,
            "prepared_at": svc.clock.now(),
        }
    )
    try:
        svc.outbox.set_publication(
            [
                (s.verdict.verdict_id, s.publication, {**pending, "leaf_index": n})
                for n, (s, _) in enumerate(chunk)
            ]
        )
    except OutboxConflict:
        # Someone else reserved (some of) these verdicts first; nothing was sent. Retry re-reads.
        raise ChainUnavailable("verdicts were reserved concurrently; retrying") from None
    svc.faults.hit("before_submit")
    _submit(svc, prepared)
    svc.faults.hit("after_submit")
    inclusion = svc.chain.wait_for(prepared, svc.inclusion_timeout_s)
    if inclusion is None:
        raise NotYetIncluded(f"{prepared.extrinsic_hash} not in a block yet")
    svc.faults.hit("before_record")
    _record(
        svc,
        pending,
        {vid: {**pending, "leaf_index": n} for n, vid in enumerate(ids)},
        inclusion,
        batch.payload,
        outcomes,
    )


def _submit(svc: PublishServices, prepared: PreparedExtrinsic) -> None:
    try:
        svc.chain.submit(prepared)
    except ChainRejected as exc:
        if exc.already_known or exc.stale:
            return  # in the pool already, or its nonce is used: resolution finds out which
        raise ChainUnavailable(f"the node refused the extrinsic: {exc.reason}") from exc


def _pending_of(svc: PublishServices, pending: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The exact pending value stored on each verdict of the batch (they differ in leaf_index)."""
    stored = svc.outbox.load(list(pending["verdicts"]))
    return {
        vid: s.publication
        for vid, s in stored.items()
        if s.publication is not None
        and s.publication.get("status") == "pending"
        and s.publication.get("extrinsic_hash") == pending["extrinsic_hash"]
    }


def _resolve_pending(
    svc: PublishServices, pending: dict[str, Any], outcomes: dict[str, Outcome]
) -> list[StoredVerdict]:
    """Finish a batch that was reserved earlier; returns verdicts to batch afresh if it is dead."""
    prepared = PreparedExtrinsic(
        extrinsic=bytes.fromhex(pending["extrinsic"]),
        extrinsic_hash=pending["extrinsic_hash"],
        account=pending["account"],
        nonce=int(pending["nonce"]),
        from_block=int(pending["from_block"]),
        mortal_until=int(pending["mortal_until"]),
        call=pending["call"],
    )
    head = svc.chain.head()
    if head.account_nonce > prepared.nonce:
        found = svc.chain.find(
            prepared.extrinsic_hash, prepared.from_block, min(head.number, prepared.mortal_until + 1)
        )
        if found is None:
            # Nonce N was consumed by another extrinsic: ours can never be included. Start over.
            current = _pending_of(svc, pending)
            loaded = svc.outbox.load(list(current))
            return [StoredVerdict(s.verdict, current[vid]) for vid, s in loaded.items()]
        inclusion = found
    else:
        _submit(svc, prepared)  # the same bytes: at most one extrinsic per (account, nonce) lands
        waited = svc.chain.wait_for(prepared, svc.inclusion_timeout_s)
        if waited is None:
            raise NotYetIncluded(f"{prepared.extrinsic_hash} (nonce {prepared.nonce}) not in a block yet")
        inclusion = waited
    payload = prepared.extrinsic[-int(pending["payload_bytes"]) :]  # the call's last argument
    _record(svc, pending, _pending_of(svc, pending), inclusion, payload, outcomes)
    return []


def _record(
    svc: PublishServices,
    pending: dict[str, Any],
    expected: dict[str, dict[str, Any]],
    inclusion: Inclusion,
    payload: bytes,
    outcomes: dict[str, Outcome],
) -> None:
    now = svc.clock.now()
    remark = next(
        (
            e
            for e in inclusion.events
            if e["event"] in ("System.Remarked",) or e["event"].startswith("GpuproofOracle.")
        ),
        None,
    )
    base = {
        "batch_id": pending["batch_id"],
        "extrinsic_hash": inclusion.extrinsic_hash,
        "block_hash": inclusion.block_hash,
        "block_number": inclusion.block_number,
        "extrinsic_index": inclusion.extrinsic_index,
        "call": pending["call"],
        "account": pending["account"],
        "nonce": pending["nonce"],
        "merkle_root": pending["merkle_root"],
        "leaf_count": len(pending["verdicts"]),
        "event": remark,
        "published_at": now,
    }
    if inclusion.success:
        changes = [
            (vid, old, canonical({**base, "status": "published", "leaf_index": old.get("leaf_index")}))
            for vid, old in expected.items()
        ]
        batch = PublishedBatch(
            position=position_of(inclusion.block_number, inclusion.extrinsic_index),
            batch_id=pending["batch_id"],
            payload=payload,
            extrinsic_hash=inclusion.extrinsic_hash,
            block_hash=inclusion.block_hash,
            block_number=inclusion.block_number,
            extrinsic_index=inclusion.extrinsic_index,
            call=pending["call"],
            account=pending["account"],
            verdict_ids=list(pending["verdicts"]),
            published_at=now,
        )
        svc.outbox.set_publication(changes, batch)
        for vid, _old, new in changes:
            outcomes[vid] = Outcome(vid, new)
    else:
        # Included but the call failed (e.g. the pallet refused it): never resend it automatically.
        reason = f"extrinsic failed on chain: {[e['event'] for e in inclusion.events]}"
        changes = [
            (
                vid,
                old,
                canonical(
                    {**base, "status": "failed", "reason": reason, "leaf_index": old.get("leaf_index")}
                ),
            )
            for vid, old in expected.items()
        ]
        svc.outbox.set_publication(changes)
        for vid, _old, new in changes:
            outcomes[vid] = Outcome(vid, new, PoisonVerdict(vid, [reason]))


def publish_with_retries(
    svc: PublishServices,
    verdict_ids: Sequence[str],
    budget_s: float,
    first_delay_s: float = 0.5,
    max_delay_s: float = 8.0,
    sleep: Any = time.sleep,
    on_retry: Callable[[Exception, float], None] | None = None,
) -> dict[str, Outcome]:
    """`publish`, retried with exponential backoff while the chain is unreachable, within budget.
    `on_retry(error, delay_s)` hears of each retry before its wait (the worker logs and counts it);
    the last error is raised, for the caller to report.

    An OutboxConflict (another publisher, e.g. the stream function beside `gpuproof-ops republish`,
    changed a publication between our read and our conditional write) is retried too: `publish`
    re-reads, and finds the other's result. Nothing is submitted twice either way."""
    deadline = time.monotonic() + budget_s
    delay = first_delay_s
    while True:
        try:
            return publish(svc, verdict_ids)
        except (ChainUnavailable, OutboxConflict) as exc:
            if time.monotonic() + delay > deadline:
                raise
            if on_retry is not None:
                on_retry(exc, delay)
            sleep(delay)
            delay = min(delay * 2, max_delay_s)
