"""End to end on the CPU executor: honest provers pass; each kind of cheating fails with its own code."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pytest

from gpuproof.protocol.canonical import canonical_bytes
from gpuproof.protocol.keys import SigningKey
from gpuproof.protocol.proof import (
    ChainCommit,
    Freivalds,
    GpuPairs,
    NumpyExecutor,
    Pair,
    ProofParams,
    Prover,
    SignedCommitment,
    ThroughputProof,
    check_deadline,
    codes,
    derive_params,
    draw_all_pairs,
    draw_pairs,
    verify_throughput,
)
from gpuproof.protocol.proof import verifier as verifier_module
from gpuproof.protocol.proof.executor import RecomputedRows
from gpuproof.protocol.proof.matrices import TAG_B, b_seed, gen_matrix

KEY = SigningKey.from_seed(bytes([7]) * 32)
OTHER = SigningKey.from_seed(bytes([8]) * 32)
CHALLENGE = "ch-1"


def nonce_of(seed: int) -> bytes:
    return hashlib.sha256(b"test-nonce" + seed.to_bytes(4, "little")).digest()


def cpu_params(gpus: int = 1, **kw: int) -> list[ProofParams]:
    return [derive_params(None, cpu=True, gpu_index=i, **kw) for i in range(gpus)]


@dataclass
class Run:
    nonce: bytes
    params: list[ProofParams]
    prover: Prover
    signed: SignedCommitment
    secret: bytes
    pairs: list[GpuPairs]
    proof: ThroughputProof


def run(
    seed: int,
    params: Sequence[ProofParams],
    executor: NumpyExecutor | None = None,
    key: SigningKey = KEY,
    keep_level: int = 3,
    secret: bytes | None = None,
) -> Run:
    nonce = nonce_of(seed)
    prover = Prover(
        nonce, key.public_hex, CHALLENGE, params, executor or NumpyExecutor(), keep_level=keep_level
    )
    signed = SignedCommitment.sign(prover.run(), key)
    secret = secret if secret is not None else hashlib.sha256(b"secret" + nonce).digest()
    pairs = draw_all_pairs(signed, secret, params)
    openings = prover.open(pairs)
    proof = ThroughputProof(
        commitment=signed.commitment, signature=signed.signature, pairs=pairs, openings=openings
    )
    return Run(nonce, list(params), prover, signed, secret, pairs, proof)


def verify(r: Run, proof: ThroughputProof | None = None, **kw: object) -> list[str]:
    args: dict[str, object] = {
        "machine_id": KEY.public_hex,
        "challenge_id": CHALLENGE,
        "nonce": r.nonce,
        "params": r.params,
        "pairs": r.pairs,
        "rng": np.random.default_rng(0),
    }
    args.update(kw)
    return [reason.code for reason in verify_throughput(proof or r.proof, **args)]  # type: ignore[arg-type]


class Fabricating(NumpyExecutor):
    """Writes random rows instead of computing a fraction of one step's rows (the tree covers them);
    the chain goes on from them, and its openings carry its own committed rows."""

    def __init__(self, step: int, rows: set[int]) -> None:
        self.step, self.rows = step, rows

    def fake(self, row: int, d: int) -> npt.NDArray[np.int8]:
        rng = np.random.default_rng(1000 + row)
        return rng.integers(-8, 9, size=d).astype(np.int8)

    def next_rows(self, step: int, rows: Sequence[int], c: npt.NDArray[np.int32]) -> npt.NDArray[np.int8]:
        a = super().next_rows(step, rows, c)
        if step == self.step:
            for k, row in enumerate(rows):
                if row in self.rows:
                    a[k] = self.fake(row, a.shape[1])
        return a


def fabricated_rows(n: int, fraction: float, seed: int) -> set[int]:
    rng = np.random.default_rng(seed)
    return {int(i) for i in rng.permutation(n)[: round(fraction * n)]}


# --- honest provers -------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_honest_prover_passes(seed: int) -> None:
    r = run(seed, cpu_params(gpus=2))
    assert verify(r) == []
    assert verify(r, pairs=None, pairs_secret=r.secret) == []  # a committee member replays the draw


@pytest.mark.parametrize("keep_level", [0, 1, 7, 20])
def test_honest_prover_passes_at_every_keep_level(keep_level: int) -> None:
    r = run(11, cpu_params(n=100, d=64, steps=3), keep_level=keep_level)
    assert verify(r) == []


def test_honest_prover_passes_with_one_row_and_one_step() -> None:
    r = run(12, cpu_params(n=1, d=16, steps=1, checks=4))
    assert len(r.pairs[0].pairs) == 1
    assert verify(r) == []


def test_proof_survives_json_round_trip_and_canonical_encoding() -> None:
    r = run(5, cpu_params())
    again = ThroughputProof.model_validate_json(r.proof.model_dump_json())
    assert canonical_bytes(again.model_dump(mode="json")) == canonical_bytes(r.proof.model_dump(mode="json"))
    assert verify(r, proof=again) == []


def test_parallel_prover_matches_sequential() -> None:
    params = cpu_params(gpus=3, n=32, d=32, steps=2)
    seq = Prover(nonce_of(1), KEY.public_hex, CHALLENGE, params, NumpyExecutor()).run()
    par = Prover(nonce_of(1), KEY.public_hex, CHALLENGE, params, NumpyExecutor(), parallel=True).run()
    assert [g.chain for g in seq.gpus] == [g.chain for g in par.gpus]


def test_a_host_of_mixed_sizes_passes_and_b_times_x_is_computed_once_per_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every GPU multiplies by the challenge's one B (`b_seed`), so the verifier computes Y = B.X
    once per size d for the whole host, not once per GPU (a spy on the real function counts it)."""
    params = [
        derive_params(None, cpu=True, gpu_index=g, n=32, d=d, steps=2) for g, d in enumerate([32, 32, 64, 32])
    ]
    r = run(31, params)
    calls: list[int] = []
    real = verifier_module.b_times_x_mod

    def counted(seed: bytes, d: int, x: npt.NDArray[np.int64], chunk: int = 512) -> npt.NDArray[np.int64]:
        calls.append(d)
        return real(seed, d, x, chunk)

    monkeypatch.setattr(verifier_module, "b_times_x_mod", counted)
    assert verify(r) == []
    assert sorted(calls) == [32, 64]


def test_freivalds_draws_one_x_per_size_from_its_own_generator() -> None:
    f = Freivalds(b_seed(nonce_of(3), KEY.public_hex), np.random.default_rng(4))
    x, y = f.vectors(32, 17)
    assert f.vectors(32, 17)[0] is x and x.shape == (32, 8) and int(x.min()) >= 0 and int(x.max()) < 17
    b = gen_matrix(f.seed, TAG_B, 32, 32).astype(np.int64)
    assert np.array_equal(y.astype(np.int64), (b @ x) % 17)
    assert f.vectors(64, 17)[0].shape == (64, 8)


# --- dishonest provers ----------------------------------------------------------------------


class OwnB(NumpyExecutor):
    """A prover of the old rule: B from the GPU's own seed instead of the challenge's B seed."""

    def commit(self, seed: bytes, b_seed: bytes, params: ProofParams, keep_level: int) -> ChainCommit:
        return super().commit(seed, seed, params, keep_level)

    def recompute(
        self,
        seed: bytes,
        b_seed: bytes,
        params: ProofParams,
        want_a: Mapping[int, Sequence[int]],
        want_c: Mapping[int, Sequence[int]],
    ) -> RecomputedRows:
        return super().recompute(seed, seed, params, want_a, want_c)


def test_a_chain_multiplied_by_another_b_fails_the_row_check() -> None:
    r = run(32, cpu_params(gpus=2, n=32, d=32, steps=2), OwnB())
    got = verify(r)
    assert got and set(got) == {codes.ROW_CHECK_FAILED}


@pytest.mark.parametrize("seed", range(3))
def test_fabricating_ten_percent_of_one_step_fails(seed: int) -> None:
    params = cpu_params(n=64, d=64, steps=2, checks=96)  # P(pass) = C(122,96)/C(128,96) ~ 1.6e-4
    rows = fabricated_rows(64, 0.10, seed)
    r = run(seed, params, Fabricating(step=2, rows=rows))
    got = verify(r)
    # k decodes to a C with g_t(C) = the fake row by construction, so the product check refuses it
    assert got and set(got) == {codes.ROW_CHECK_FAILED}


def test_accepted_exactly_when_no_fabricated_pair_is_drawn() -> None:
    """The only way a fabricating prover passes: the draw missed every fabricated transition."""
    params = cpu_params(n=32, d=32, steps=4, checks=32)
    rows = fabricated_rows(32, 0.10, 9)  # 3 rows of step 2
    outcomes = set()
    for k in range(24):
        r = run(20 + k, params, Fabricating(step=2, rows=rows), keep_level=2)
        missed = all(not (p.step == 2 and p.row in rows) for p in r.pairs[0].pairs)
        passed = verify(r) == []
        assert passed == missed
        outcomes.add(passed)
    assert outcomes == {True, False}


def test_replayed_transcript_fails_on_the_nonce() -> None:
    old = run(1, cpu_params())
    assert codes.NONCE_MISMATCH in verify(old, nonce=nonce_of(2))
    # Re-signing the old roots under the new nonce: the chain and row 0 of the new seed give it away.
    new_nonce = nonce_of(2)
    forged = old.signed.commitment.model_copy(update={"nonce": new_nonce.hex()})
    signed = SignedCommitment.sign(forged, KEY)
    proof = old.proof.model_copy(update={"commitment": forged, "signature": signed.signature})
    got = verify(old, proof=proof, nonce=new_nonce)
    assert codes.ROOT_CHAIN_INVALID in got and codes.NONCE_MISMATCH not in got


def test_transcript_moved_to_another_machine_fails() -> None:
    r = run(1, cpu_params())
    got = verify(r, machine_id=OTHER.public_hex)
    assert codes.MACHINE_MISMATCH in got and codes.SIGNATURE_INVALID in got
    moved = r.signed.commitment.model_copy(update={"machine_id": OTHER.public_hex})
    signed = SignedCommitment.sign(moved, OTHER)
    proof = r.proof.model_copy(update={"commitment": moved, "signature": signed.signature})
    got = verify(r, proof=proof, machine_id=OTHER.public_hex)
    assert codes.ROOT_CHAIN_INVALID in got and codes.MACHINE_MISMATCH not in got


def test_opening_other_rows_than_asked_fails() -> None:
    r = run(1, cpu_params())
    other = draw_all_pairs(r.signed, b"another secret", r.params)
    proof = r.proof.model_copy(update={"openings": r.prover.open(other)})
    assert set(verify(r, proof=proof)) == {codes.OPENINGS_MISMATCH}


def test_bad_merkle_path_fails() -> None:
    r = run(1, cpu_params())
    gpu = r.proof.openings[0]
    o = gpu.openings[5]
    bad = o.model_copy(update={"a_path": ["00" * 32, *o.a_path[1:]]})
    openings = [gpu.model_copy(update={"openings": [*gpu.openings[:5], bad, *gpu.openings[6:]]})]
    proof = r.proof.model_copy(update={"openings": openings})
    assert verify(r, proof=proof) == [codes.MERKLE_PATH_INVALID]


def test_pairs_other_than_drawn_fail() -> None:
    r = run(1, cpu_params())
    chosen = [GpuPairs(gpu_index=0, pairs=[Pair(step=1 + k // 128, row=k % 128) for k in range(140)])]
    proof = r.proof.model_copy(update={"pairs": chosen})
    assert codes.PAIRS_MISMATCH in verify(r, proof=proof, pairs=None, pairs_secret=r.secret)


def test_bad_signature_fails() -> None:
    r = run(1, cpu_params())
    proof = r.proof.model_copy(update={"signature": OTHER.sign(r.signed.commitment.signing_bytes()).hex()})
    assert verify(r, proof=proof) == [codes.SIGNATURE_INVALID]


def test_out_of_range_and_malformed_openings_fail() -> None:
    r = run(1, cpu_params())
    gpu = r.proof.openings[0]
    o = gpu.openings[0]

    def with_first(changed: object) -> ThroughputProof:
        openings = [gpu.model_copy(update={"openings": [changed, *gpu.openings[1:]]})]
        return r.proof.model_copy(update={"openings": openings})

    wide = with_first(o.model_copy(update={"a_row": [9, *o.a_row[1:]]}))
    assert verify(r, proof=wide) == [codes.VALUE_OUT_OF_RANGE]
    short = with_first(o.model_copy(update={"a_row": o.a_row[:-1]}))
    assert verify(r, proof=short) == [codes.OPENING_MALFORMED]


def test_commitment_for_other_gpus_or_steps_fails() -> None:
    r = run(1, cpu_params(gpus=2))
    assert codes.PARAMS_MISMATCH in verify(r, params=cpu_params(gpus=3))
    longer = [p.model_copy(update={"steps": p.steps + 1}) for p in r.params]
    assert codes.PARAMS_MISMATCH in verify(r, params=longer)


def test_each_failure_has_its_own_code() -> None:
    assert len(set(codes.ALL_CODES)) == len(codes.ALL_CODES)
    assert all(code.startswith("proof_") for code in codes.ALL_CODES)


# --- deadline (service clock) ---------------------------------------------------------------


@pytest.mark.parametrize("gpus", [1, 8])
@pytest.mark.parametrize("rate", [170.0, 462.0, 1385.0])
def test_deadline_slow_gpu_fails_honest_gpu_passes(gpus: int, rate: float) -> None:
    params = [derive_params(rate, gpu_index=i) for i in range(gpus)]
    expected = params[0].expected_s
    issued = 1_000_000.0
    assert check_deadline(issued, issued + expected * 1.0, params) == []
    assert check_deadline(issued, issued + expected * 1.1, params) == []
    late = check_deadline(issued, issued + expected * 1.3, params)
    assert [r.code for r in late] == [codes.DEADLINE_MISSED]


def test_deadline_in_the_full_verification_and_clock_errors() -> None:
    r = run(1, cpu_params())
    p = r.params[0]
    assert codes.DEADLINE_MISSED in verify(r, issued_at=0.0, commitment_received_at=p.deadline_s + 0.01)
    assert verify(r, issued_at=0.0, commitment_received_at=p.deadline_s) == []
    assert [x.code for x in check_deadline(10.0, 9.0, p)] == [codes.CLOCK_INVALID]


# --- the draw -------------------------------------------------------------------------------


def test_draw_is_deterministic_distinct_and_bound_to_its_inputs() -> None:
    p = derive_params(None, cpu=True, n=16, d=16, steps=4, checks=40)
    first = draw_pairs(b"commitment", b"secret", p)
    assert first == draw_pairs(b"commitment", b"secret", p)
    assert len({(x.step, x.row) for x in first}) == 40
    assert all(1 <= x.step <= 4 and 0 <= x.row < 16 for x in first)
    assert first != draw_pairs(b"commitment2", b"secret", p)
    assert first != draw_pairs(b"commitment", b"secret2", p)
    assert first != draw_pairs(b"commitment", b"secret", p.model_copy(update={"gpu_index": 1}))
    everything = draw_pairs(b"c", b"s", p.model_copy(update={"checks": 64}))
    assert len(everything) == 64


# --- bounded entries and exact groups (issue 10) -----------------------------------------------

INT64_MIN = -(2**63)


def _with_opening(r: Run, k: int, changed: object) -> ThroughputProof:
    gpu = r.proof.openings[0]
    opens = [*gpu.openings[:k], changed, *gpu.openings[k + 1 :]]
    return r.proof.model_copy(update={"openings": [gpu.model_copy(update={"openings": opens})]})


def test_int64_min_in_an_opening_is_out_of_range_not_wrapped() -> None:
    """np.abs(-2**63) is negative and -2**63 packs to the int8 0: a zero entry of A_(t-1) written as
    -2**63 passed the range check and its Merkle path, and the dot product wrapped (v1, issue 10);
    every opened entry is checked as a bounded Python int before numpy sees it."""
    r = run(1, cpu_params())
    found = next(
        (k, o, j)
        for k, o in enumerate(r.proof.openings[0].openings)
        if o.step > 1 and o.a_prev is not None
        for j, v in enumerate(o.a_prev)
        if v == 0
    )
    k, o, j = found
    a_prev = list(o.a_prev or [])
    a_prev[j] = INT64_MIN
    assert verify(r, proof=_with_opening(r, k, o.model_copy(update={"a_prev": a_prev}))) == [
        codes.VALUE_OUT_OF_RANGE
    ]
    for name in ("a_row",):
        row = list(getattr(o, name))
        row[0] = INT64_MIN
        tampered = _with_opening(r, k, o.model_copy(update={name: row}))
        assert verify(r, proof=tampered) == [codes.VALUE_OUT_OF_RANGE]
    floaty = _with_opening(r, k, o.model_copy(update={"a_row": [float(v) for v in o.a_row]}))
    assert verify(r, proof=floaty) == [codes.VALUE_OUT_OF_RANGE]


def test_an_opening_outside_the_steps_is_malformed_not_an_index_error() -> None:
    r = run(1, cpu_params())
    o = r.proof.openings[0].openings[0]
    far = _with_opening(r, 0, o.model_copy(update={"step": r.params[0].steps + 5}))
    got = verify(r, proof=far, pairs=None, pairs_secret=None)
    assert codes.OPENING_MALFORMED in got or codes.OPENINGS_MISMATCH in got


def test_an_extra_opening_group_for_an_uncommitted_gpu_is_refused() -> None:
    r = run(1, cpu_params())
    extra = r.proof.openings[0].model_copy(update={"gpu_index": 5})
    proof = r.proof.model_copy(update={"openings": [*r.proof.openings, extra]})
    assert verify(r, proof=proof) == [codes.OPENINGS_EXTRA]


def test_a_duplicate_opening_group_is_refused() -> None:
    r = run(1, cpu_params())
    proof = r.proof.model_copy(update={"openings": [*r.proof.openings, r.proof.openings[0]]})
    assert verify(r, proof=proof) == [codes.OPENINGS_DUPLICATE]


def test_a_missing_opening_group_is_refused() -> None:
    r = run(1, cpu_params(gpus=2))
    proof = r.proof.model_copy(update={"openings": r.proof.openings[:1]})
    assert verify(r, proof=proof) == [codes.OPENINGS_MISSING]


def test_pair_groups_must_match_the_committed_gpus() -> None:
    r = run(1, cpu_params(gpus=2))
    extra = r.proof.pairs[0].model_copy(update={"gpu_index": 7})
    assert verify(r, proof=r.proof.model_copy(update={"pairs": [*r.proof.pairs, extra]})) == [
        codes.PAIRS_EXTRA
    ]
    twice = [*r.proof.pairs, r.proof.pairs[1]]
    assert verify(r, proof=r.proof.model_copy(update={"pairs": twice})) == [codes.PAIRS_DUPLICATE]
    assert verify(r, proof=r.proof.model_copy(update={"pairs": r.proof.pairs[:1]})) == [codes.PAIRS_MISSING]
