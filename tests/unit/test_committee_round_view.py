"""The published round hides the service's own findings while commits are open (issue 10, 4)."""

from __future__ import annotations

from typing import Any

from gpuproof.logic.committee import CLOSED, OPEN, CommitteeRound

BOOKED = 1_000.0
SCALE = 6 / (36 * 3600)  # commits close 6 s after the draw, reveals 8 s
EXPECTED = {"machine_id": "ab" * 32, "calc_point": 12_345, "is_support": True}


def a_round(**overrides: Any) -> CommitteeRound:
    fields: dict[str, Any] = dict(
        machine_id="ab" * 32,
        round=1,
        status=OPEN,
        owner="5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY",
        region="europe",
        challenge_id="c1",
        evidence_digest="00" * 32,
        members=["a" * 64, "b" * 64, "c" * 64],
        excluded=[],
        booked_at=BOOKED,
        scale=SCALE,
        commit_deadline=BOOKED + 6,
        reveal_deadline=BOOKED + 8,
        beacon_index=1,
        beacon_value="11" * 32,
        beacon_tip="22" * 32,
        pool_digest="33" * 32,
        pool_size=3,
        pool=["a" * 64, "b" * 64, "c" * 64],
        cap=10,
        expected_info=dict(EXPECTED),
        expected_problems=[{"code": "x", "message": "y"}],
        performance_index=1.0,
    )
    fields.update(overrides)
    return CommitteeRound(**fields)


def test_expected_findings_hidden_while_commits_are_open() -> None:
    doc = a_round(commits={"a" * 64: {"commit_hash": "0" * 32, "at": BOOKED + 1}}).published(BOOKED + 2)
    assert doc["expected_hidden"] is True
    assert doc["expected_info"] is None and doc["expected_problems"] == []
    assert "12345" not in repr(doc)


def test_expected_findings_shown_once_every_member_committed() -> None:
    commits = {m: {"commit_hash": f"{i:032x}", "at": BOOKED + 1} for i, m in enumerate("abc")}
    commits = {m * 64: v for m, v in commits.items()}
    doc = a_round(commits=commits).published(BOOKED + 2)
    assert doc["expected_hidden"] is False and doc["expected_info"] == EXPECTED


def test_expected_findings_shown_after_the_commit_deadline_and_when_closed() -> None:
    assert a_round().published(BOOKED + 6)["expected_info"] == EXPECTED
    assert a_round(status=CLOSED).published(BOOKED + 1)["expected_info"] == EXPECTED


def test_stored_round_keeps_its_findings() -> None:
    r = a_round()
    r.published(BOOKED + 1)
    assert r.expected_info == EXPECTED and r.as_dict()["expected_info"] == EXPECTED
