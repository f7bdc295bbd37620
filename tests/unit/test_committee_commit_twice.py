"""`committee commit` is safe to run twice (issue 10, 4): the saved vote the service accepted is
never overwritten, so the member can still reveal it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gpuproof.cli.member import (
    ApiError,
    CommitConflict,
    CommitteeClient,
    Inspection,
    MemberState,
    commit_findings,
    reveal_findings,
)
from gpuproof.protocol.dbc_commit import CommitteeUploadInfo
from gpuproof.protocol.keys import SigningKey

MID = "ab" * 32
FIELDS: dict[str, Any] = {
    "machine_id": MID,
    "gpu_type": "",
    "gpu_num": 0,
    "cuda_core": 0,
    "gpu_mem": 0,
    "calc_point": 4321,
    "sys_disk": 100,
    "data_disk": 0,
    "cpu_type": "cpu",
    "cpu_core_num": 4,
    "cpu_rate": 2000,
    "mem_num": 16,
}


class RoundService(CommitteeClient):
    """The commit/reveal slice of the committee API, in memory, with the service's refusals."""

    def __init__(self, *, lose_first_answer: bool = False) -> None:
        super().__init__("http://service.invalid", SigningKey.generate())
        self.commits: dict[str, str] = {}
        self.reveals: list[CommitteeUploadInfo] = []
        self.lose_first_answer = lose_first_answer

    def commit(self, machine_id: str, round_no: int, commit_hash: str) -> Any:
        if self.account in self.commits:
            raise ApiError(409, "already_committed", "this member already committed in this round", [])
        self.commits[self.account] = commit_hash
        if self.lose_first_answer:
            self.lose_first_answer = False
            raise ConnectionError("the answer was lost on the way back")
        return {"phase": "commit"}

    def round(self, machine_id: str, round_no: int) -> Any:
        return {"commits": {a: {"commit_hash": h} for a, h in self.commits.items()}}

    def reveal(
        self, machine_id: str, round_no: int, info: CommitteeUploadInfo, live_check: Any = None
    ) -> Any:
        if not info.matches_commit(self.commits[self.account]):
            raise ApiError(422, "reveal_mismatch", "blake2_128 of the revealed info is not the commit", [])
        self.reveals.append(info)
        return {"phase": "reveal"}


def inspection() -> Inspection:
    return Inspection(MID, 1, [], dict(FIELDS), [], None, "verified")


def test_second_commit_keeps_the_accepted_vote_and_reveal_still_matches(tmp_path: Path) -> None:
    service, state = RoundService(), MemberState(tmp_path / "state.json")
    first = commit_findings(service, state, inspection())
    saved = state.get(MID, 1)
    second = commit_findings(service, state, inspection())  # today: a new rand_str overwrites the vote
    assert second == first
    assert state.get(MID, 1) == saved
    revealed = reveal_findings(service, state, MID, 1)
    assert revealed.matches_commit(service.commits[service.account])
    assert service.reveals == [first]


def test_commit_whose_answer_was_lost_is_recognised(tmp_path: Path) -> None:
    service, state = RoundService(lose_first_answer=True), MemberState(tmp_path / "state.json")
    with pytest.raises(ConnectionError):
        commit_findings(service, state, inspection())
    info = commit_findings(service, state, inspection())  # the same hash again → 409 → it is ours
    assert state.get(MID, 1)["committed"] is True  # type: ignore[index]
    assert info.matches_commit(service.commits[service.account])
    reveal_findings(service, state, MID, 1)


def test_a_commit_the_saved_vote_does_not_explain_is_reported(tmp_path: Path) -> None:
    service, state = RoundService(), MemberState(tmp_path / "state.json")
    service.commits[service.account] = "0" * 32  # committed from elsewhere (another state file)
    with pytest.raises(CommitConflict, match="another commit"):
        commit_findings(service, state, inspection())
    assert state.get(MID, 1)["committed"] is False  # type: ignore[index]


def test_the_cli_run_twice_keeps_the_vote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from typer.testing import CliRunner

    import gpuproof.cli.committee as cli

    service = RoundService()
    monkeypatch.setattr(cli, "_client", lambda api, key, as_json: service)
    monkeypatch.setattr(cli, "_inspect", lambda *args: inspection())
    state = tmp_path / "state.json"
    args = ["commit", MID, "1", "--api", "http://service.invalid", "--state", str(state), "--json"]
    first = CliRunner().invoke(cli.app, args)
    assert first.exit_code == 0, first.output
    saved = state.read_text()
    second = CliRunner().invoke(cli.app, args)
    assert second.exit_code == 0, second.output
    assert json.loads(second.stdout)["already_committed"] is True
    assert json.loads(second.stdout)["commit_hash"] == json.loads(first.stdout)["commit_hash"]
    assert state.read_text() == saved and oct(state.stat().st_mode & 0o777) == "0o600"
