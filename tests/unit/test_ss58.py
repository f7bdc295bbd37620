"""SS58 with its checksum, against Substrate's own vectors and scalecodec (issue 10, 4 and 5)."""

from __future__ import annotations

import pytest
from scalecodec.utils.ss58 import ss58_decode, ss58_encode

from gpuproof.protocol.ss58 import Ss58Error, account_key, decode, encode, is_valid_ss58, public_key

ALICE = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
ALICE_KEY = "d43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d"
BOB = "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty"
BOB_KEY = "8eaf04151687736326c9fea17e25fc5287613693c912909cb226aa4794f26a48"
ALICE_POLKADOT = "15oF4uVJwmo4TdGW7VfQxNLavjCXviqxT9S1MgbjMNHr6Sp5"  # prefix 0
ALICE_KUSAMA = "HNZata7iMYWmk5RvZRTiAsSDhV8366zq2YGb3tLH5Upf74F"  # prefix 2


def test_substrate_vectors() -> None:
    assert decode(ALICE) == (42, bytes.fromhex(ALICE_KEY))
    assert decode(BOB) == (42, bytes.fromhex(BOB_KEY))
    assert decode(ALICE_POLKADOT) == (0, bytes.fromhex(ALICE_KEY))
    assert decode(ALICE_KUSAMA) == (2, bytes.fromhex(ALICE_KEY))
    assert encode(bytes.fromhex(ALICE_KEY)) == ALICE
    assert encode(bytes.fromhex(ALICE_KEY), 0) == ALICE_POLKADOT


@pytest.mark.parametrize("prefix", [0, 1, 2, 42, 63, 64, 69, 255, 1284, 16383])
def test_one_and_two_byte_prefixes_agree_with_scalecodec(prefix: int) -> None:
    address = encode(bytes.fromhex(BOB_KEY), prefix)
    assert address == ss58_encode(BOB_KEY, ss58_format=prefix)
    assert decode(address) == (prefix, bytes.fromhex(BOB_KEY))
    assert ss58_decode(address, valid_ss58_format=prefix) == BOB_KEY


def test_a_broken_checksum_is_refused() -> None:
    broken = ALICE[:-1] + ("R" if ALICE[-1] != "R" else "S")
    with pytest.raises(Ss58Error, match="checksum"):
        decode(broken)
    assert not is_valid_ss58(broken)
    # one changed character inside the key: base58-valid, checksum wrong
    inner = ALICE[:10] + ("b" if ALICE[10] != "b" else "c") + ALICE[11:]
    assert not is_valid_ss58(inner)


@pytest.mark.parametrize("bad", ["", "0" * 48, "5GrwvaEF5zXb26Fz9rcQpDWS57Ct", "I" * 48, ALICE + "1"])
def test_not_an_address(bad: str) -> None:
    assert not is_valid_ss58(bad)


def test_accounts_compare_as_public_keys_whatever_their_encoding() -> None:
    names = [ALICE, ALICE_POLKADOT, ALICE_KUSAMA, ALICE_KEY, "0x" + ALICE_KEY, ALICE_KEY.upper()]
    assert {account_key(n) for n in names} == {ALICE_KEY}
    assert public_key(BOB) == bytes.fromhex(BOB_KEY)
    with pytest.raises(Ss58Error):
        account_key("ab" * 31)
