"""DBC's CommitteeUploadInfo commit hash: the published vector, exactly."""

from __future__ import annotations

import hashlib

import pytest
from pydantic import ValidationError

from gpuproof.protocol.dbc_commit import CommitteeUploadInfo

VECTOR = CommitteeUploadInfo(
    machine_id="c2ad03b01cb72857978f7e18527afddb671c8354c72c46523405334be23c3701",
    gpu_type="GeForceRTX3080",
    gpu_num=4,
    cuda_core=8704,
    gpu_mem=10,
    calc_point=59890,
    sys_disk=500,
    data_disk=3905,
    cpu_type="Intel(R) Xeon(R) Silver 4214R",
    cpu_core_num=46,
    cpu_rate=2400,
    mem_num=440,
    rand_str="abcdefg2",
    is_support=True,
)


def test_dbc_hash_vector() -> None:
    assert VECTOR.commit_hash_hex() == "a9f842cd2a8e2ce16d42b546fbd7c119"
    assert VECTOR.commit_hash() == bytes.fromhex("a9f842cd2a8e2ce16d42b546fbd7c119")


def test_commit_bytes_are_the_plain_concatenation() -> None:
    assert VECTOR.commit_bytes() == (
        b"c2ad03b01cb72857978f7e18527afddb671c8354c72c46523405334be23c3701"
        b"GeForceRTX3080" + b"4" + b"8704" + b"10" + b"59890" + b"500" + b"3905"
        b"Intel(R) Xeon(R) Silver 4214R" + b"46" + b"2400" + b"440" + b"abcdefg2" + b"1"
    )
    assert hashlib.blake2b(VECTOR.commit_bytes(), digest_size=16).hexdigest() == VECTOR.commit_hash_hex()


def test_refusal_variant_differs() -> None:
    refusal = VECTOR.model_copy(update={"is_support": False})
    assert refusal.commit_bytes().endswith(b"abcdefg20")
    assert refusal.commit_hash() != VECTOR.commit_hash()


def test_rand_str_changes_the_hash() -> None:
    assert VECTOR.model_copy(update={"rand_str": "abcdefg3"}).commit_hash() != VECTOR.commit_hash()


@pytest.mark.parametrize(
    "commit",
    [
        "a9f842cd2a8e2ce16d42b546fbd7c119",
        "0xa9f842cd2a8e2ce16d42b546fbd7c119",
        bytes.fromhex("a9f842cd2a8e2ce16d42b546fbd7c119"),
    ],
)
def test_reveal_matches_commit(commit: str | bytes) -> None:
    assert VECTOR.matches_commit(commit)


@pytest.mark.parametrize("commit", ["a9f842cd2a8e2ce16d42b546fbd7c118", "not hex", b"\x00" * 16, ""])
def test_reveal_does_not_match_other_commit(commit: str | bytes) -> None:
    assert not VECTOR.matches_commit(commit)


def test_fields_are_bounded() -> None:
    with pytest.raises(ValidationError):
        CommitteeUploadInfo.model_validate({**VECTOR.model_dump(), "gpu_num": 2**32})
    with pytest.raises(ValidationError):
        CommitteeUploadInfo.model_validate({**VECTOR.model_dump(), "machine_id": "XYZ"})
    with pytest.raises(ValidationError):
        CommitteeUploadInfo.model_validate({**VECTOR.model_dump(), "extra": 1})


def test_field_order_is_dbc_order() -> None:
    assert list(CommitteeUploadInfo.model_fields) == [
        "machine_id",
        "gpu_type",
        "gpu_num",
        "cuda_core",
        "gpu_mem",
        "calc_point",
        "sys_disk",
        "data_disk",
        "cpu_type",
        "cpu_core_num",
        "cpu_rate",
        "mem_num",
        "rand_str",
        "is_support",
    ]
