"""The tally, every DBC case."""

from __future__ import annotations

from gpuproof.committee.tally import Tally, TallyResult, tally
from gpuproof.protocol.dbc_commit import CommitteeUploadInfo

BOOKED = ["5A", "5B", "5C"]


def info(
    rand: str = "r", *, support: bool = True, calc_point: int = 59890, gpu_num: int = 4
) -> CommitteeUploadInfo:
    return CommitteeUploadInfo(
        machine_id="c2ad03b01cb72857978f7e18527afddb671c8354c72c46523405334be23c3701",
        gpu_type="GeForceRTX3080",
        gpu_num=gpu_num,
        cuda_core=8704,
        gpu_mem=10,
        calc_point=calc_point,
        sys_disk=500,
        data_disk=3905,
        cpu_type="Intel(R) Xeon(R) Silver 4214R",
        cpu_core_num=46,
        cpu_rate=2400,
        mem_num=440,
        rand_str=rand,
        is_support=support,
    )


def refusal(rand: str, **kw: int) -> CommitteeUploadInfo:
    return info(rand, support=False, **kw)


def test_three_agree_support_confirmed() -> None:
    got = tally(BOOKED, {"5A": info("a"), "5B": info("b"), "5C": info("c")})
    assert got.result is TallyResult.confirmed
    assert got.agreeing == ("5A", "5B", "5C")
    assert got.dissenting == () and got.absent == ()
    assert got.decided_info == info("a")


def test_three_refuse_with_different_details_refused() -> None:
    reveals = {"5A": refusal("a"), "5B": refusal("b", calc_point=1), "5C": refusal("c", gpu_num=8)}
    got = tally(BOOKED, reveals)
    assert got.result is TallyResult.refused
    assert got.agreeing == ("5A", "5B", "5C")
    assert got.dissenting == () and got.absent == ()
    assert got.decided_info is None


def test_two_to_one_support_wins_and_odd_one_dissents() -> None:
    got = tally(BOOKED, {"5A": info("a"), "5B": info("b", calc_point=12345), "5C": info("c")})
    assert got.result is TallyResult.confirmed
    assert got.agreeing == ("5A", "5C")
    assert got.dissenting == ("5B",)
    assert got.decided_info is not None and got.decided_info.calc_point == 59890


def test_two_to_one_refusal_wins() -> None:
    got = tally(BOOKED, {"5A": refusal("a"), "5B": info("b"), "5C": refusal("c", calc_point=3)})
    assert got.result is TallyResult.refused
    assert got.agreeing == ("5A", "5C")
    assert got.dissenting == ("5B",)


def test_all_differ_no_consensus_all_invalid() -> None:
    got = tally(BOOKED, {"5A": info("a"), "5B": info("b", calc_point=1), "5C": refusal("c")})
    assert got.result is TallyResult.no_consensus
    assert got.agreeing == ()
    assert got.dissenting == ("5A", "5B", "5C")
    assert got.absent == ()


def test_zero_reveals_no_consensus_all_absent() -> None:
    got = tally(BOOKED, {})
    assert got == Tally(TallyResult.no_consensus, (), (), ("5A", "5B", "5C"), None, "no reveals")


def test_one_reveal_decides_as_on_dbc() -> None:
    got = tally(BOOKED, {"5B": info("b")})
    assert got.result is TallyResult.confirmed
    assert got.agreeing == ("5B",)
    assert got.absent == ("5A", "5C")
    refused = tally(BOOKED, {"5C": refusal("c")})
    assert refused.result is TallyResult.refused and refused.absent == ("5A", "5B")


def test_one_reveal_with_min_reveals_two_is_no_consensus() -> None:
    got = tally(BOOKED, {"5B": info("b")}, min_reveals=2)
    assert got.result is TallyResult.no_consensus
    assert got.agreeing == () and got.dissenting == ()
    assert got.absent == ("5A", "5C")


def test_two_reveals_identical_decide() -> None:
    got = tally(BOOKED, {"5A": info("a"), "5C": info("c")})
    assert got.result is TallyResult.confirmed
    assert got.agreeing == ("5A", "5C")
    assert got.absent == ("5B",)
    assert tally(BOOKED, {"5A": refusal("a"), "5C": refusal("c", calc_point=9)}).result is TallyResult.refused


def test_two_reveals_different_no_consensus() -> None:
    got = tally(BOOKED, {"5A": info("a"), "5C": refusal("c")})
    assert got.result is TallyResult.no_consensus
    assert got.dissenting == ("5A", "5C")
    assert got.absent == ("5B",)


def test_rand_str_is_not_part_of_the_answer() -> None:
    assert (
        tally(BOOKED, {"5A": info("x1"), "5B": info("x2"), "5C": info("x3")}).result is TallyResult.confirmed
    )


def test_reveals_from_unbooked_members_are_ignored() -> None:
    got = tally(BOOKED, {"5A": info("a"), "5Z": refusal("z"), "5Y": refusal("y")})
    assert got.result is TallyResult.confirmed
    assert got.agreeing == ("5A",)
    assert "5Z" not in got.dissenting + got.agreeing + got.absent
