"""A committee member's own re-check of the capacity phase (gpuproof.committee.capacity): the
service's recorded session replayed through the same verifier, compared per target with the
service's record and breakdown. Real phases at the CPU claim's test size (the numpy prover on the
hardware double `SimulatedDevice`, tests/unit/capacity_adversaries.py), on a modelled clock."""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from rich.console import Console

from benchmark_probe.capacity import openings_reference
from benchmark_probe.nvml_double import fixed_host
from gpuproof.claim import Claim
from gpuproof.cli.evidence_view import capacity_table
from gpuproof.cli.member import capacity_openings
from gpuproof.committee.capacity import MISMATCH, PhaseSession, compare, recheck
from gpuproof.evidence import MeasuredFacts, assess, parse_capacity
from gpuproof.logic.capacity import session_doc
from gpuproof.protocol.capacity import TargetOpenings
from gpuproof.protocol.capacity.models import OPENINGS_MEDIA_TYPE
from gpuproof.protocol.capacity.openings import load_openings
from gpuproof.protocol.capacity.params import cpu_capacity_params
from gpuproof.protocol.capacity.prover import CapacityProver
from gpuproof.protocol.capacity.wire import OpenedTarget, encode_openings
from gpuproof.protocol.keys import SigningKey
from gpuproof.protocol.machine import Region
from gpuproof.protocol.report import BenchmarkReport, Integrity, Inventory
from tests.unit import capacity_adversaries as adv

KEY = SigningKey.from_seed(bytes(range(32)))
NONCE = bytes(range(100, 132))
CHALLENGE = "member-capacity-1"
CLAIM = Claim(None, 0)  # the CPU claim: its test-size phase (16 KiB "GPU" 0, 32 KiB host RAM)
PARAMS = cpu_capacity_params()
CHALLENGE_PARAMS = {"capacity": PARAMS.model_dump(mode="json")}
RNG = np.random.default_rng(11)


class Keep(adv.Tamper):
    """Keeps the openings the prover sent (what the service stores)."""

    def __init__(self) -> None:
        self.kept: list[TargetOpenings] = []

    def openings(self, openings: Sequence[TargetOpenings]) -> Sequence[TargetOpenings]:
        self.kept = list(openings)
        return openings


def run(prover_cls: Any = CapacityProver, **kwargs: Any) -> tuple[adv.Run, dict[str, Any], bytes]:
    """One phase: the service's result, its session as the capacity route serves it, the openings'
    bytes (the binary transcript the service stores)."""
    prover = prover_cls(NONCE, KEY.public_hex, CHALLENGE, PARAMS, adv.honest_devices(PARAMS), **kwargs)
    keep = Keep()
    result = adv.run_phase(prover, KEY, PARAMS, nonce=NONCE, challenge_id=CHALLENGE, tamper=keep)
    doc = {**session_doc(NONCE, result.session), "params": PARAMS.model_dump(mode="json")}
    return result, json.loads(json.dumps(doc)), encode_openings(keep.kept, PARAMS)


def stored(result: adv.Run) -> dict[str, Any]:
    """verification["capacity"] as the service stores and serves it (a JSON attribute)."""
    doc: dict[str, Any] = json.loads(json.dumps(result.result.as_record()))
    return doc


def breakdown(record: Any) -> dict[str, Any]:
    """The per-input breakdown scored from `record` (the service's, or the member's)."""
    report = BenchmarkReport(
        machine_id=KEY.public_hex,
        challenge_id=CHALLENGE,
        challenge_nonce="00" * 32,
        probe_version="t",
        created_at=0,
        inventory=Inventory(backend="cpu", host=fixed_host()),
        integrity=Integrity(),
    )
    capacity, reasons = parse_capacity(record)
    return assess(CLAIM, report, Region.europe, 64, MeasuredFacts(None, capacity, tuple(reasons))).as_dict()


def member(doc: dict[str, Any], openings: bytes | Sequence[OpenedTarget] | None, params: Any = None) -> Any:
    decoded = load_openings(openings, PARAMS) if isinstance(openings, bytes) else openings
    return recheck(
        PhaseSession.from_doc(doc),
        decoded,
        machine_id=KEY.public_hex,
        challenge_id=CHALLENGE,
        challenge_params=CHALLENGE_PARAMS if params is None else params,
        claim=CLAIM,
        rng=RNG,
    )


def rows(comparison: Any) -> dict[str, Any]:
    return {t.target: t for t in comparison.targets}


@pytest.fixture(scope="module")
def honest() -> tuple[adv.Run, dict[str, Any], bytes]:
    return run()


@pytest.fixture(scope="module")
def half() -> tuple[adv.Run, dict[str, Any], bytes]:
    """A device holding half its fill and answering zeros for the rest (on time, and wrong)."""
    return run(adv.PartialProver, regenerate=False)


def test_an_honest_phase_is_rechecked_and_agreed(honest: Any) -> None:
    result, doc, openings = honest
    service = stored(result)
    mine, why = member(doc, openings)
    assert mine is not None and why == [] and mine.passed
    found = compare(service, breakdown(service), mine, targets=[0, 65535])
    assert found.agreed and found.reason is None and found.basis == "rechecked"
    assert set(rows(found)) == {"GPU 0", "host RAM"} and all(t.agreed for t in found.targets)
    assert rows(found)["host RAM"].member.proven_bytes == service["host_ram"]["proven_bytes"] > 0
    # The member scores from its own result: the same record, so the same breakdown as the service's.
    assert found.record == service and breakdown(found.record)["digest"] == breakdown(service)["digest"]
    assert "re-verified by this member" in found.detail()


def test_a_record_rewritten_to_proven_is_refused_per_target(half: Any) -> None:
    result, doc, openings = half
    honest_record = stored(result)
    assert not any(g["passed"] for g in honest_record["gpus"]) and not honest_record["host_ram"]["passed"]
    forged = copy.deepcopy(honest_record)
    forged["gpus"][0].update(passed=True, proven_bytes=PARAMS.targets[0].proven_bytes)
    forged["host_ram"].update(passed=True, proven_bytes=PARAMS.targets[1].proven_bytes)
    forged["reasons"] = []
    mine, _ = member(doc, openings)
    # zeros for the rows it lacks: its read rounds' spots fail, and the GPU's bandwidth-round spots
    both = ["capacity_answer_mismatch", "capacity_sweep_mismatch"]
    assert mine is not None and sorted({r.code for r in mine.reasons}) == both
    found = compare(forged, breakdown(forged), mine, targets=[0, 65535])
    assert not found.agreed and found.reason == MISMATCH
    assert found.data_reasons == both and found.timing_reasons == []
    by = rows(found)
    for name in ("GPU 0", "host RAM"):
        assert not by[name].agreed and by[name].service.passed and not by[name].member.passed
    assert by["GPU 0"].member.reasons == both and by["host RAM"].member.reasons == both[:1]
    # The breakdown the forged record produced scores host RAM proven: a second difference there.
    assert any("breakdown" in d for d in by["host RAM"].differences)
    assert found.detail().startswith(f"{MISMATCH}: reasons: service [], mine {both}")
    # What the member scores with is its own (failed) result: RAM not proven.
    inputs = {i["input"]: i for i in breakdown(found.record)["inputs"]}
    assert inputs["RAM_GB"]["status"] == "not_proven"
    # And where the service recorded the failure truthfully, the member agrees with it.
    assert compare(honest_record, breakdown(honest_record), mine).agreed


def test_answer_roots_changed_in_the_session_fail_the_members_own_spot_checks(honest: Any) -> None:
    result, doc, openings = honest
    changed = copy.deepcopy(doc)
    first = changed["rounds"][0]
    assert first["targets"] == [0]
    first["answers"][0]["root"] = "00" * 32
    mine, _ = member(changed, openings)
    assert mine is not None
    found = compare(stored(result), None, mine)
    assert not found.agreed and rows(found)["GPU 0"].member.reasons == ["capacity_answer_mismatch"]
    assert rows(found)["host RAM"].agreed


def test_timings_are_replayed_from_the_services_recorded_clock(honest: Any) -> None:
    """The member cannot time the phase: it replays the deadlines on the service's figures, and
    says which reasons rest on them."""
    result, doc, openings = honest
    late = copy.deepcopy(doc)
    host_round = next(r for r in late["rounds"] if r["targets"] == [65535])
    deadline = PARAMS.targets[1].round_deadline_s
    host_round["received_at"] = host_round["sent_at"] + deadline + 1.0
    mine, _ = member(late, openings)
    assert mine is not None
    found = compare(stored(result), None, mine)
    assert found.timing_reasons == ["capacity_host_round_deadline_missed"] and found.data_reasons == []
    assert not rows(found)["host RAM"].agreed and rows(found)["GPU 0"].agreed
    assert "service's clock" in found.note


def test_without_the_session_the_member_agrees_only_with_not_proven(honest: Any, half: Any) -> None:
    proven = stored(honest[0])
    refused = compare(
        proven, breakdown(proven), None, targets=[0, 65535], unavailable="capacity_session_missing"
    )
    assert not refused.agreed and refused.basis == "not_rechecked" and refused.record is None
    assert all("could not re-check it: capacity_session_missing" in t.differences[0] for t in refused.targets)
    failed = stored(half[0])  # the service itself proved nothing: agreed, scored with its record
    agreed = compare(failed, breakdown(failed), None, targets=[0, 65535], unavailable="not fetched")
    assert agreed.agreed and agreed.basis == "service_proved_nothing" and agreed.record == failed
    missing = compare(None, breakdown(None), None, targets=[0, 65535])
    assert missing.agreed and missing.record is None and "not proven" in missing.detail()
    # No capacity record, yet the breakdown says host RAM is proven: not agreed.
    inconsistent = compare(None, breakdown(proven), None, targets=[0, 65535])
    assert not inconsistent.agreed and not rows(inconsistent)["host RAM"].agreed
    malformed = compare({"version": 1}, breakdown({"version": 1}), None)
    assert malformed.agreed and malformed.service_reasons == ["capacity_record_malformed"]


def test_the_recheck_holds_the_session_to_the_claim(honest: Any) -> None:
    _, doc, openings = honest
    other = cpu_capacity_params(network_allowance_s=1.0).model_dump(mode="json")
    result, why = member(doc, openings, {"capacity": other})
    assert result is None and [r.code for r in why] == ["capacity_params_mismatch"]
    result, why = member({**doc, "params": other}, openings)
    assert result is None and [r.code for r in why] == ["capacity_params_mismatch"]
    result, why = member(doc, None)
    assert result is None and [r.code for r in why] == ["capacity_missing"]
    result, why = member({**doc, "draw_secret": None}, openings)
    assert result is None and [r.code for r in why] == ["capacity_round_missing"]
    result, why = member({**doc, "signed_commitment": None}, openings)
    assert result is None and [r.code for r in why] == ["capacity_missing"]
    result, why = member(doc, openings, {})
    assert result is None and [r.code for r in why] == ["capacity_missing"]


def test_openings_are_read_by_one_decoder_with_bounds(honest: Any) -> None:
    _, doc, raw = honest
    decoded = load_openings(raw, PARAMS, OPENINGS_MEDIA_TYPE)
    assert [o.target for o in decoded] == [tp.target for tp in PARAMS.targets]
    mine, why = member(doc, decoded)
    assert why == [] and mine is not None and mine.passed
    with pytest.raises(ValueError, match="no decoder"):
        load_openings(raw, PARAMS, "application/octet-stream")
    with pytest.raises(ValueError, match="truncated"):
        load_openings(raw[:-8], PARAMS)
    # one byte more: trailing, or over max_size when the draw opened no short last chunk
    with pytest.raises(ValueError, match=r"trailing|over the"):
        load_openings(raw + b"\0", PARAMS)


def test_the_cli_table_shows_each_target_and_the_reason(half: Any) -> None:
    result, doc, openings = half
    forged = stored(result)
    forged["host_ram"].update(passed=True, proven_bytes=PARAMS.targets[1].proven_bytes)
    mine, _ = member(doc, openings)
    found = compare(forged, None, mine).as_dict()
    assert json.loads(json.dumps(found))["reason"] == MISMATCH  # as `committee inspect --json` prints it
    console = Console(record=True, width=240)
    console.print(capacity_table(found))
    text = console.export_text()
    assert "GPU 0" in text and "host RAM" in text and MISMATCH in text
    assert "capacity_answer_mismatch" in text and "service's clock" in text


def test_the_member_reads_openings_inline_or_uploaded_to_their_reference(honest: Any) -> None:
    """The openings as the capacity session hands them out: inline (base64 of the stored bytes), or
    a presigned GET (the fetch is the HTTP transport; here it yields the bytes an object store would)."""
    _, doc, raw = honest

    def agreed(found: tuple[Any, str]) -> bool:
        got, why = found
        mine, reasons = member(doc, got)
        return why == "" and reasons == [] and mine is not None and mine.passed

    inline = {"delivery": "inline", "media_type": OPENINGS_MEDIA_TYPE, "encoding": "base64"}
    data = base64.b64encode(raw).decode()
    assert agreed(capacity_openings({**doc, "openings": {**inline, "data": data}}, no_fetch))
    got, why = capacity_openings({**doc, "openings": {**inline, "encoding": "zlib", "data": data}}, no_fetch)
    assert got is None and "encoded as 'zlib'" in why
    got, why = capacity_openings({**doc, "openings": {**inline, "media_type": "x/y", "data": data}}, no_fetch)
    assert got is None and "no decoder" in why
    huge = base64.b64encode(raw * 40).decode()
    got, why = capacity_openings({**doc, "openings": {**inline, "data": huge}}, no_fetch)
    assert got is None and "over the phase's bound" in why
    ref = openings_reference(raw).model_dump(mode="json", exclude_none=True)
    upload = {
        "delivery": "upload",
        "media_type": OPENINGS_MEDIA_TYPE,
        "urls": ["https://store/k"],
        "reference": ref,
    }
    served = {**doc, "openings": upload}
    assert agreed(capacity_openings(served, lambda _url: iter([raw[:999], raw[999:]])))
    got, why = capacity_openings(served, lambda _url: iter([raw[:-1] + b" "]))
    assert got is None and "transcript_digest_mismatch" in why
    got, why = capacity_openings(served, lambda _url: iter([raw, b"more"]))
    # longer than the reference says; over the phase's bound too when raw is already max_size
    assert got is None and ("transcript_size_mismatch" in why or "transcript_too_large" in why), why
    # two parts (§17.10): each object fetched in order, the reference's SHA-256 the concatenation's
    cut = len(raw) // 3
    objects = {"https://store/k": raw[:cut], "https://store/k.2": raw[cut:]}
    two = {
        **upload,
        "urls": list(objects),
        "reference": openings_reference(raw[:cut], raw[cut:]).model_dump(mode="json", exclude_none=True),
    }
    assert two["reference"]["parts"] == [cut, len(raw) - cut]
    assert agreed(capacity_openings({**doc, "openings": two}, lambda url: iter([objects[url]])))
    swapped = {**two, "urls": list(objects)[::-1]}
    got, why = capacity_openings({**doc, "openings": swapped}, lambda url: iter([objects[url]]))
    assert got is None and ("transcript_digest_mismatch" in why or "transcript_size_mismatch" in why), why
    got, why = capacity_openings({**doc, "openings": {**two, "urls": ["https://store/k"]}}, no_fetch)
    assert got is None and "1 openings objects for a reference of 2" in why
    assert capacity_openings({**doc, "openings": None}, no_fetch) == (
        None,
        "no capacity openings were received",
    )


def no_fetch(url: str) -> Any:
    raise AssertionError(f"nothing to fetch for inline openings ({url})")
