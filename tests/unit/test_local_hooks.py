"""The local stack's hooks for restarting on the same state (tests/e2e/test_process_kill.py runs
them for real: a stack SIGKILLed at each point, a second one on the same moto and chain)."""

from __future__ import annotations

from typing import Any

import pytest

from gpuproof.local import hooks
from gpuproof.local.__main__ import main
from gpuproof.local.chain import ChainUnavailableLocally, LocalChain


def test_an_adopted_chain_is_never_started_or_stopped_here() -> None:
    chain = LocalChain.adopt("ws://127.0.0.1:9944")
    assert (chain.url, chain.http_url, chain.adopted) == (
        "ws://127.0.0.1:9944",
        "http://127.0.0.1:9944",
        True,
    )
    with pytest.raises(ChainUnavailableLocally, match="another process's chain"):
        chain.start()
    chain.stop()  # nothing of ours to stop: no error, nothing signalled


@pytest.mark.parametrize("url", ["ws://127.0.0.1", "wss://", "127.0.0.1:9944", "ftp://127.0.0.1:21"])
def test_a_chain_endpoint_must_be_ws_host_port(url: str) -> None:
    with pytest.raises(ValueError, match="ws://host:port"):
        LocalChain.adopt(url)


class _Node(LocalChain):
    """The chain's two RPCs recorded instead of sent (no node in a unit test)."""

    def __init__(self, next_index: int) -> None:
        super().__init__(host="127.0.0.1", port=9944)
        self.next_index = next_index
        self.funded: list[list[str]] = []

    def rpc(self, method: str, params: list[Any] | None = None) -> Any:
        assert method == "system_accountNextIndex"
        return self.next_index

    def add_funds(self, accounts: list[str]) -> None:
        self.funded.append(accounts)


def test_a_used_account_is_not_funded_again_which_would_reset_its_nonce() -> None:
    fresh, used = _Node(next_index=0), _Node(next_index=3)
    assert fresh.ensure_funded("0x" + "11" * 32) is True
    assert fresh.funded == [["0x" + "11" * 32]]
    assert used.ensure_funded("0x" + "11" * 32) is False
    assert used.funded == []


def test_the_hang_hook_knows_only_the_publishers_points() -> None:
    assert hooks.HANG_POINTS == ("before_submit", "after_submit", "before_record", "before_mark")
    with pytest.raises(ValueError, match="unknown publisher point"):
        hooks.hang_publisher_at("after_lunch")
    with pytest.raises(SystemExit):  # the CLI refuses it before anything starts
        main(["--hang-at", "after_lunch"])
