"""The binary capacity openings (docs/protocol.md §17.6, `application/vnd.gpuproof.capacity-openings.v3`):
the prover's TargetOpenings byte for byte as specified, a strict decoder (header = params, counts
and indices bounded before the bytes they imply, no trailing bytes, truncation refused, one code),
the real verifier over the decoded views, and the real H100 shape."""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
import pytest

from gpuproof.claim import capacity_params_for, make_claim
from gpuproof.protocol.canonical import canonical_bytes
from gpuproof.protocol.capacity import (
    CapacityParams,
    CapacityTranscript,
    TargetOpenings,
    codes,
    verify_capacity,
)
from gpuproof.protocol.capacity.params import gpu_target, phase
from gpuproof.protocol.capacity.prover import CapacityProver
from gpuproof.protocol.capacity.wire import (
    DIGEST,
    MAGIC,
    OpenedTarget,
    OpeningsError,
    decode_openings,
    encode_openings,
    max_size,
    opened,
)
from gpuproof.protocol.keys import SigningKey
from gpuproof.protocol.proof import merkle
from gpuproof.protocol.proof.wire import MAGIC as THROUGHPUT_MAGIC
from tests.unit import capacity_adversaries as adv

KEY = SigningKey.from_seed(bytes(range(32)))
NONCE = bytes(range(7, 39))
CHALLENGE = "ch-wire"
HEADER_AT = len(MAGIC) + 2  # the first target's header
HEADER = struct.Struct("<HBBHHQIHHB")


@dataclass
class Honest:
    params: CapacityParams
    run: adv.Run
    openings: list[TargetOpenings]
    data: bytes


@pytest.fixture(scope="module")
def honest() -> Honest:
    params = adv.target_params(1, host=True)
    prover = CapacityProver(NONCE, KEY.public_hex, CHALLENGE, params, adv.honest_devices(params))
    kept: list[TargetOpenings] = []

    class Keep(adv.Tamper):
        def openings(self, openings):  # type: ignore[no-untyped-def]
            kept.extend(openings)
            return openings

    run = adv.run_phase(prover, KEY, params, nonce=NONCE, challenge_id=CHALLENGE, tamper=Keep())
    assert run.result.reasons == []
    return Honest(params, run, kept, encode_openings(kept, params))


def verify(h: Honest, data: bytes) -> set[str]:
    s = h.run.session
    assert s.signed is not None and s.commitment_received_at is not None and s.draw_secret is not None
    result = verify_capacity(
        h.params,
        machine_id=KEY.public_hex,
        challenge_id=CHALLENGE,
        nonce=NONCE,
        signed=s.signed,
        phase_opened_at=s.opened_at,
        commitment_received_at=s.commitment_received_at,
        rounds=s.rounds,
        draw_secret=s.draw_secret,
        openings=decode_openings(data, h.params),
        rng=np.random.default_rng(3),
    )
    return {r.code for r in result.reasons}


def same(a: OpenedTarget, b: OpenedTarget) -> bool:
    def eq(x: np.ndarray | None, y: np.ndarray | None) -> bool:  # type: ignore[type-arg]
        return (x is None and y is None) or (x is not None and y is not None and np.array_equal(x, y))

    spots = len(a.spots) == len(b.spots) and all(
        (s.round, s.item) == (t.round, t.item)
        and len(s.rows) == len(t.rows)
        and all(eq(x, y) for x, y in zip(s.rows, t.rows, strict=True))
        and eq(s.tree_path, t.tree_path)
        and eq(s.answer_path, t.answer_path)
        for s, t in zip(a.spots, b.spots, strict=False)
    )
    walks = len(a.walks) == len(b.walks) and all(
        v.walk == w.walk
        and len(v.steps) == len(w.steps)
        and all(
            (x.stage, x.row) == (y.stage, y.row)
            and all(eq(getattr(x, f), getattr(y, f)) for f in ("a_row", "a_path"))
            and len(x.prev) == len(y.prev) == len(x.prev_paths) == len(y.prev_paths)
            and all(eq(r, q) for r, q in zip(x.prev + x.prev_paths, y.prev + y.prev_paths, strict=True))
            for x, y in zip(v.steps, w.steps, strict=True)
        )
        for v, w in zip(a.walks, b.walks, strict=False)
    )
    return a.target == b.target and eq(a.roots, b.roots) and spots and walks


def refused(data: bytes | bytearray, params: CapacityParams, match: str) -> None:
    with pytest.raises(OpeningsError, match=match) as err:
        decode_openings(data, params)
    assert err.value.code == codes.OPENING_MALFORMED == "capacity_opening_malformed"


def test_the_binary_round_trips_the_provers_openings_and_the_verifier_passes_it(honest: Honest) -> None:
    h = honest
    decoded = decode_openings(h.data, h.params)
    by_target = {o.target: o for o in h.openings}
    assert [d.target for d in decoded] == [0, 0xFFFF]  # ascending target order
    assert all(same(d, opened(by_target[d.target])) for d in decoded)
    assert verify(h, h.data) == set()
    assert h.data[:8] == MAGIC and h.data[8:10] == struct.pack("<H", 2)
    # decoded rows and digests are views of the bytes, not copies
    assert decoded[0].spots[0].rows[0].base is not None and not decoded[0].roots.flags.owndata


def test_the_size_is_the_layout_and_the_bound_is_known_before(honest: Honest) -> None:
    h = honest
    short = 0  # rows a short last chunk lacks
    for o in h.openings:
        tp = next(t for t in h.params.targets if t.target == o.target)
        short += sum(tp.chunk_rows - len(s.rows) for s in o.spots)
    gpu = h.params.targets[0]
    assert len(h.data) == max_size(h.params) - short * gpu.d
    # the JSON v1 encoding of the same openings, for scale
    json_bytes = len(canonical_bytes(CapacityTranscript(targets=h.openings).model_dump(mode="json")))
    assert len(h.data) < json_bytes / 2


def test_a_tampered_byte_decodes_and_is_refused_by_the_verifier(honest: Honest) -> None:
    h = honest
    gpu = h.params.targets[0]
    first_row = HEADER_AT + HEADER.size + DIGEST * gpu.n_stages + 6  # target 0, spot 0, row 0
    flipped = bytearray(h.data)
    flipped[first_row] = (flipped[first_row] + 1) % 0x7D  # another entry in [-125, 125]
    assert verify(h, bytes(flipped)) == {codes.MERKLE_PATH_INVALID, codes.ANSWER_MISMATCH}
    flipped[first_row] = 0x7E  # 126: the byte decodes, the verifier refuses the value
    assert verify(h, bytes(flipped)) == {codes.VALUE_OUT_OF_RANGE}
    # The data's last bytes: host RAM's last walk, its stage-1 step (no parent rows): its row, then
    # its path. Its row's last entry, changed, neither opens nor recomputes (a path byte is not always
    # read: a row two steps open is authenticated once, its second copy's path is not checked).
    host = next(tp for tp in h.params.targets if tp.is_host)
    last = bytearray(h.data)
    at = len(last) - 32 * merkle.depth(host.n_rows) - 1
    last[at] = (last[at] + 1) % 0x7D
    assert verify(h, bytes(last)) == {codes.MERKLE_PATH_INVALID, codes.WALK_CHECK_FAILED}


def test_truncated_trailing_and_oversized_bytes_are_refused(honest: Honest) -> None:
    h, data = honest, honest.data
    refused(data[:-1], h.params, "truncated")
    refused(data[: len(data) // 2], h.params, "truncated")
    refused(data[:5], h.params, "truncated: magic")
    refused(b"", h.params, "truncated")
    refused(data + bytes(max_size(h.params)), h.params, "over the")


def test_trailing_bytes_are_refused() -> None:
    # every item opened, the last of them a short chunk: the encoding is under max_size
    tp = gpu_target(0, 2000, rate_tops=1e-6, bandwidth_gbs=1e-3, d=32, chunk_rows=4, spots=64, walks=2)
    params = phase([tp], rounds=1)
    assert tp.n_rows % tp.chunk_rows and tp.spots >= tp.items
    openings = adv.shaped_openings(params, np.random.default_rng(0))
    data = encode_openings(openings, params)
    assert len(data) + 1 <= max_size(params)
    assert same(decode_openings(data, params)[0], opened(openings[0]))
    refused(data + b"\x00", params, "1 trailing bytes")


def test_a_header_that_is_not_the_params_is_refused_before_anything_is_read(honest: Honest) -> None:
    h = honest
    gpu = h.params.targets[0]

    def patched(offset: int, fmt: str, value: int) -> bytes:
        data = bytearray(h.data)
        struct.pack_into(fmt, data, offset, value)
        return bytes(data)

    refused(patched(8, "<H", 0xFFFF), h.params, "65535 targets, the phase has 2")
    fields = HEADER.unpack_from(h.data, HEADER_AT)
    assert fields[3] == gpu.d
    d_at = HEADER_AT + struct.calcsize("<HBB")
    refused(patched(d_at, "<H", gpu.d + 1), h.params, f"d {gpu.d + 1} \\(params: {gpu.d}\\)")
    spots_at = HEADER_AT + struct.calcsize("<HBBHHQI")
    refused(patched(spots_at, "<H", 0xFFFF), h.params, "spot_count 65535")
    walks_at = spots_at + 2
    refused(patched(walks_at, "<H", 0xFFFF), h.params, "walk_count 65535")
    # the same bytes against another challenge's params: another d, another row count
    wider = adv.target_params(1, host=True).model_copy(
        update={"targets": [gpu.model_copy(update={"d": 64}), h.params.targets[1]]}
    )
    refused(h.data, wider, "d 32 \\(params: 64\\)")


def test_indices_outside_the_phase_are_refused(honest: Honest) -> None:
    h = honest
    gpu = h.params.targets[0]
    spot_at = HEADER_AT + HEADER.size + DIGEST * gpu.n_stages
    data = bytearray(h.data)
    struct.pack_into("<I", data, spot_at + 2, gpu.items)
    refused(bytes(data), h.params, f"item {gpu.items} outside the phase")
    data = bytearray(h.data)
    struct.pack_into("<H", data, spot_at, 0)
    refused(bytes(data), h.params, "round 0")
    # the first walk of target 0: after its spots
    depth = merkle.depth(gpu.n_rows)
    spot_bytes = sum(
        6 + len(s.rows) * gpu.d + DIGEST * (depth - 2 + merkle.depth(gpu.items)) for s in h.openings[0].spots
    )
    walk_at = spot_at + spot_bytes
    data = bytearray(h.data)
    struct.pack_into("<H", data, walk_at, gpu.walks)
    refused(bytes(data), h.params, f"walk {gpu.walks}, the params open")
    # every step carries its own row, a_row and a_path (walks v2): the second step starts after the
    # first's row, a_row and two parents (stride 1), each with its path
    second_row = walk_at + 2 + 4 + 3 * (gpu.d + DIGEST * depth)
    (row,) = struct.unpack_from("<I", h.data, second_row)
    assert row == h.openings[0].walks[0].steps[1].row
    data = bytearray(h.data)
    struct.pack_into("<I", data, second_row, gpu.n_rows)
    refused(bytes(data), h.params, f"step 1: row {gpu.n_rows} of {gpu.n_rows}")
    # a row inside the layer but not the drawn one decodes, and the verifier says which
    struct.pack_into("<I", data, second_row, (row + 3) % gpu.n_rows)
    assert verify(h, bytes(data)) == {codes.OPENINGS_MISMATCH}


def test_other_formats_are_refused_by_their_magic(honest: Honest) -> None:
    h = honest
    json_v1 = canonical_bytes(CapacityTranscript(targets=h.openings).model_dump(mode="json"))
    refused(json_v1[: max_size(h.params)], h.params, "magic")
    refused(THROUGHPUT_MAGIC + h.data[8:], h.params, "magic")


def test_the_encoder_refuses_what_the_layout_cannot_hold(honest: Honest) -> None:
    h = honest
    t = h.openings[0]
    with pytest.raises(ValueError, match="one TargetOpenings per params target"):
        encode_openings(h.openings[:1], h.params)
    spot = t.spots[0]
    short_row = spot.model_copy(update={"rows": [spot.rows[0][:-2], *spot.rows[1:]]})
    with pytest.raises(ValueError, match="a row of 31 bytes, d = 32"):
        encode_openings([t.model_copy(update={"spots": [short_row, *t.spots[1:]]}), h.openings[1]], h.params)
    walk = t.walks[0]
    other = walk.steps[1].model_copy(update={"stage": walk.steps[0].stage})
    broken = walk.model_copy(update={"steps": [walk.steps[0], other, *walk.steps[2:]]})
    with pytest.raises(ValueError, match="the walk is at stage"):
        encode_openings([t.model_copy(update={"walks": [broken, *t.walks[1:]]}), h.openings[1]], h.params)
    short_a = walk.steps[1].model_copy(update={"a_row": walk.steps[1].a_row[:-2]})
    broken = walk.model_copy(update={"steps": [walk.steps[0], short_a, *walk.steps[2:]]})
    with pytest.raises(ValueError, match="a row of 31 bytes, d = 32"):
        encode_openings([t.model_copy(update={"walks": [broken, *t.walks[1:]]}), h.openings[1]], h.params)
    with pytest.raises(ValueError, match="spots"):
        encode_openings([t.model_copy(update={"spots": t.spots[1:]}), h.openings[1]], h.params)


def test_one_h100_target_at_its_real_shape_encodes_and_decodes() -> None:
    params = capacity_params_for(make_claim("NVIDIA H100 80GB HBM3", 1, allow_cpu_backend=False))
    assert params is not None
    [tp] = params.targets
    openings = adv.shaped_openings(params, np.random.default_rng(5))
    data = encode_openings(openings, params)
    short = sum(tp.chunk_rows - len(s.rows) for s in openings[0].spots)
    assert len(data) == max_size(params) - short * tp.d
    assert 5_000_000 < len(data) <= 5_697_971  # docs/protocol.md §17.8
    [decoded] = decode_openings(data, params)
    assert same(decoded, opened(openings[0]))


def test_mutated_bytes_decode_or_are_refused_and_the_verifier_never_raises(honest: Honest) -> None:
    """Any single changed byte or cut: OpeningsError, or openings the verifier judges (no other
    exception reaches the worker)."""
    h, rng = honest, np.random.default_rng(11)
    header_end = HEADER_AT + HEADER.size + 64
    for k in range(30):
        data = bytearray(h.data)
        at = int(rng.integers(header_end)) if k % 2 else int(rng.integers(len(data)))
        data[at] = (data[at] + 1 + int(rng.integers(255))) % 256
        cut = bytes(data[: int(rng.integers(len(data)))]) if k % 5 == 0 else bytes(data)
        try:
            decode_openings(cut, h.params)
        except OpeningsError:
            continue
        assert isinstance(verify(h, cut), set)


def test_two_part_openings_are_the_whole_cut_before_host_rams_section(honest: Honest) -> None:
    """§17.10: the head (magic, count, every GPU target's section) and host RAM's section are the
    bytes `encode_openings` writes, cut where host RAM's begins; each part refuses the wrong targets."""
    from gpuproof.protocol.capacity.wire import encode_head, encode_host_part, has_host_part
    from gpuproof.protocol.delivery import TranscriptRef, parse_reference

    params, openings = honest.params, honest.openings
    gpus = [o for o in openings if o.target != params.targets[-1].target]
    host = next(o for o in openings if o.target == params.targets[-1].target)
    head, tail = encode_head(gpus, params), encode_host_part(host, params)
    assert has_host_part(params) and head + tail == encode_openings(openings, params) == honest.data
    assert not has_host_part(adv.target_params(1, host=False))
    with pytest.raises(ValueError):
        encode_head(openings, params)  # host RAM is not the head's
    with pytest.raises(ValueError):
        encode_host_part(gpus[0], params)
    ref = TranscriptRef(
        version=2,
        transcript_sha256="0" * 64,
        transcript_bytes=len(head) + len(tail),
        parts=[len(head), len(tail)],
    )
    assert ref.parts == [len(head), len(tail)]
    with pytest.raises(ValueError):  # the parts must add up
        TranscriptRef(version=2, transcript_sha256="0" * 64, transcript_bytes=len(head), parts=[len(head), 1])
    with pytest.raises(ValueError):
        TranscriptRef(version=2, transcript_sha256="0" * 64, transcript_bytes=3, parts=[1, 1, 1])
    one = TranscriptRef(version=2, transcript_sha256="0" * 64, transcript_bytes=3)
    assert "parts" not in one.model_dump(mode="json")  # a one-object reference's bytes are unchanged
    got, reasons = parse_reference(ref.model_dump(mode="json"))  # a proof of throughput is one object
    assert got is None and [x.code for x in reasons] == ["proof_reference_malformed"]


def test_the_prover_hands_the_gpu_targets_openings_over_before_host_rams_recompute() -> None:
    """What the two-part upload relies on (§17.10): `open(..., ready)` calls `ready` once, with
    every GPU target's final openings, after their recompute and before host RAM's."""
    params = adv.target_params(2, host=True)
    prover = CapacityProver(NONCE, KEY.public_hex, CHALLENGE, params, adv.honest_devices(params))
    run = adv.run_phase(prover, KEY, params, nonce=NONCE, challenge_id=CHALLENGE)
    assert run.result.reasons == []
    log: list[object] = []
    recompute = prover.charge_fill

    def charged(tp):  # type: ignore[no-untyped-def]
        log.append(tp.target)
        return recompute(tp)

    prover.charge_fill = charged  # type: ignore[method-assign]
    handed: list[list[TargetOpenings]] = []

    def ready(gpus: list[TargetOpenings]) -> None:
        handed.append(gpus)
        log.append("ready")

    spots, walks = run.session.draw()
    nonces = {r.round: bytes.fromhex(r.nonce) for r in run.session.rounds}
    openings = prover.open(nonces, spots, walks, ready=ready)
    host = params.targets[-1].target
    assert log == [0, 1, "ready", host]
    (gpus,) = handed
    assert gpus == [o for o in openings if o.target != host] and len(gpus) == 2
