"""The chain adapter: substrate-interface against a Substrate node (DBC, or the local Chopsticks).

Configured by node URL, the call ("Pallet.function", production: the gpuproof pallet's
`submit_verdicts(payload)` of docs/chain.md) and an sr25519 oracle key. Where the runtime has no
such pallet the same payload goes through `System.remark_with_event`. Extrinsics are built with
an explicit nonce and a mortal era, so the publisher can record them before submitting them;
inclusion is found by scanning blocks for the extrinsic's hash (blake2_256 of its bytes).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from gpuproof.chain.merkle import blake2_256

FALLBACK_CALL = "System.remark_with_event"
DEFAULT_CALL = "GpuproofOracle.submit_verdicts"
ERA_PERIOD = 64
T = TypeVar("T")


class ChainUnavailable(Exception):
    """The node cannot be reached or answered with a transport error: worth retrying later."""


class ChainRejected(Exception):
    """The node refused the extrinsic (invalid, stale nonce, cannot pay): `reason` says why."""

    def __init__(self, reason: str, *, stale: bool = False, already_known: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.stale = stale
        self.already_known = already_known


@dataclass(frozen=True)
class PreparedExtrinsic:
    """A signed extrinsic, not yet submitted: everything needed to find or resubmit it later."""

    extrinsic: bytes
    extrinsic_hash: str
    account: str
    nonce: int
    from_block: int
    mortal_until: int
    call: str


@dataclass(frozen=True)
class Inclusion:
    block_hash: str
    block_number: int
    extrinsic_index: int
    extrinsic_hash: str
    success: bool
    events: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class ChainHead:
    number: int
    hash: str
    account_nonce: int  # the oracle account's nonce in the state of this block


@dataclass(frozen=True)
class ChainSettings:
    node_url: str
    call: str = DEFAULT_CALL
    oracle_suri: str | None = None
    oracle_secret_arn: str | None = None
    timeout_s: float = 60.0
    # Which head the publisher trusts: "finalized" (default; a block that cannot be reverted) or
    # "best" (faster, but a reorg could undo a recorded publication).
    head: str = "finalized"

    @property
    def enabled(self) -> bool:
        return bool(self.node_url)

    @classmethod
    def from_env(cls) -> ChainSettings:
        return cls(
            node_url=os.environ.get("CHAIN_NODE_URL", ""),
            call=os.environ.get("CHAIN_CALL") or DEFAULT_CALL,
            oracle_suri=os.environ.get("ORACLE_SURI") or None,
            oracle_secret_arn=os.environ.get("ORACLE_KEY_SECRET_ARN") or None,
            timeout_s=float(os.environ.get("CHAIN_INCLUSION_TIMEOUT_S", "60")),
            head=os.environ.get("CHAIN_HEAD", "finalized"),
        )


def oracle_keypair(secret: str, ss58_format: int | None = 42) -> Any:
    """The sr25519 oracle key from its secret: a mnemonic (optionally with //derivation), a dev
    path like //Alice, a 0x-prefixed 32-byte seed, or any other secret string, whose blake2_256
    (domain "gpuproof-oracle:") is the seed (what the template's generated secret holds)."""
    from substrateinterface import Keypair

    text = secret.strip()
    if not text:
        raise ValueError("the oracle key secret is empty")
    if text.startswith("0x") and len(text) == 66:
        return Keypair.create_from_seed(text, ss58_format=ss58_format)
    if text.startswith("/") or " " in text:
        return Keypair.create_from_uri(text, ss58_format=ss58_format)
    seed = blake2_256(b"gpuproof-oracle:" + text.encode("utf-8"))
    return Keypair.create_from_seed("0x" + seed.hex(), ss58_format=ss58_format)


def load_oracle_secret(settings: ChainSettings, secrets_client: Any | None = None) -> str:
    if settings.oracle_suri:
        return settings.oracle_suri
    if not settings.oracle_secret_arn:
        raise RuntimeError("no oracle key: set ORACLE_KEY_SECRET_ARN (or ORACLE_SURI for development)")
    if secrets_client is None:
        import boto3

        secrets_client = boto3.client("secretsmanager")
    value: str = secrets_client.get_secret_value(SecretId=settings.oracle_secret_arn)["SecretString"]
    return value


def _transport_errors() -> tuple[type[BaseException], ...]:
    from websocket import WebSocketException

    return (ConnectionError, OSError, TimeoutError, WebSocketException, BrokenPipeError)


class SubstrateChain:
    """The ChainPort on substrate-interface. One websocket, reopened after a transport error."""

    def __init__(self, settings: ChainSettings, secret: str) -> None:
        self.settings = settings
        self._secret = secret
        self._substrate: Any = None
        self._keypair: Any = None

    # ------------------------------------------------------------ connection

    def _connect(self) -> Any:
        if self._substrate is None:
            from substrateinterface import SubstrateInterface

            try:
                self._substrate = SubstrateInterface(
                    url=self.settings.node_url, auto_reconnect=False, ws_options={"timeout": 10}
                )
                self._keypair = oracle_keypair(self._secret, self._substrate.ss58_format or 42)
            except _transport_errors() as exc:
                self._substrate = None
                raise ChainUnavailable(f"{self.settings.node_url}: {exc}") from exc
        return self._substrate

    def _guard(self, fn: Callable[[Any], T]) -> T:
        from substrateinterface.exceptions import SubstrateRequestException

        substrate = self._connect()
        try:
            return fn(substrate)
        except _transport_errors() as exc:
            self.close()
            raise ChainUnavailable(f"{self.settings.node_url}: {exc}") from exc
        except SubstrateRequestException as exc:
            raise _rejection(exc) from exc

    def close(self) -> None:
        if self._substrate is not None:
            with contextlib.suppress(Exception):  # closing a broken socket may fail; it is gone anyway
                self._substrate.close()
        self._substrate = None

    @property
    def account(self) -> str:
        self._connect()
        address: str = self._keypair.ss58_address
        return address

    # ------------------------------------------------------------ the port

    def call_name(self) -> str:
        """The configured call if the runtime has it, else the remark fallback."""

        def pick(substrate: Any) -> str:
            pallet, _, function = self.settings.call.partition(".")
            if pallet and function and substrate.get_metadata_call_function(pallet, function) is not None:
                return self.settings.call
            return FALLBACK_CALL

        return self._guard(pick)

    def _trusted_head(self, substrate: Any) -> str:
        """The hash of the head the publisher trusts (finalized unless configured otherwise)."""
        if self.settings.head == "best":
            return str(substrate.get_chain_head())
        return str(substrate.get_chain_finalised_head())

    def head(self) -> ChainHead:
        """The trusted head (finalized by default) and the oracle account's nonce in its state."""

        def read(substrate: Any) -> ChainHead:
            block_hash = self._trusted_head(substrate)
            number = int(substrate.get_block_number(block_hash))
            info = substrate.query("System", "Account", [self._keypair.ss58_address], block_hash=block_hash)
            return ChainHead(number=number, hash=block_hash, account_nonce=int(info.value["nonce"]))

        return self._guard(read)

    def prepare(self, payload: bytes) -> PreparedExtrinsic:
        """Sign an extrinsic carrying `payload` with the next free nonce (the pool included)."""
        call_name = self.call_name()

        def build(substrate: Any) -> PreparedExtrinsic:
            pallet, _, function = call_name.partition(".")
            if call_name == FALLBACK_CALL:
                params: dict[str, Any] = {"remark": payload}
            else:
                fn = substrate.get_metadata_call_function(pallet, function)
                arg = fn.get_param_info() if hasattr(fn, "get_param_info") else {}
                name = next(iter(arg), "payload")
                params = {name: payload}
            call = substrate.compose_call(call_module=pallet, call_function=function, call_params=params)
            number = int(substrate.get_block_number(substrate.get_chain_head()))
            nonce = int(substrate.get_account_nonce(self._keypair.ss58_address))
            xt = substrate.create_signed_extrinsic(
                call=call, keypair=self._keypair, era={"period": ERA_PERIOD}, nonce=nonce
            )
            raw = bytes(xt.data.data)
            return PreparedExtrinsic(
                extrinsic=raw,
                extrinsic_hash="0x" + blake2_256(raw).hex(),
                account=self._keypair.ss58_address,
                nonce=nonce,
                from_block=number,
                mortal_until=number + ERA_PERIOD,
                call=call_name,
            )

        return self._guard(build)

    def submit(self, prepared: PreparedExtrinsic) -> None:
        """Hand the exact bytes to the node's pool. Raises ChainRejected (with .stale when the nonce
        is used, .already_known when the pool holds it) or ChainUnavailable."""

        def send(substrate: Any) -> None:
            substrate.rpc_request("author_submitExtrinsic", ["0x" + prepared.extrinsic.hex()])

        self._guard(send)

    def find(self, extrinsic_hash: str, from_block: int, to_block: int | None = None) -> Inclusion | None:
        """Scan blocks from_block..to_block (default: the trusted head) for the extrinsic; its events."""

        def scan(substrate: Any) -> Inclusion | None:
            last = to_block
            if last is None:
                last = int(substrate.get_block_number(self._trusted_head(substrate)))
            for number in range(max(from_block, 0), last + 1):
                block_hash = substrate.get_block_hash(number)
                if block_hash is None:
                    continue
                block = substrate.rpc_request("chain_getBlock", [block_hash])["result"]["block"]
                for index, xt_hex in enumerate(block["extrinsics"]):
                    if "0x" + blake2_256(bytes.fromhex(xt_hex[2:])).hex() == extrinsic_hash:
                        return self._inclusion(substrate, block_hash, number, index, extrinsic_hash)
            return None

        return self._guard(scan)

    def wait_for(
        self, prepared: PreparedExtrinsic, timeout_s: float, poll_s: float = 0.3
    ) -> Inclusion | None:
        """Poll new blocks until the extrinsic shows up, its era ends, or `timeout_s` passes."""
        deadline = time.monotonic() + timeout_s
        scanned_to = prepared.from_block - 1
        while True:
            head = self.head()
            if head.number > scanned_to:
                found = self.find(prepared.extrinsic_hash, scanned_to + 1, head.number)
                if found is not None:
                    return found
                scanned_to = head.number
            if head.number > prepared.mortal_until or time.monotonic() > deadline:
                return None
            time.sleep(poll_s)

    def _inclusion(self, substrate: Any, block_hash: str, number: int, index: int, xt_hash: str) -> Inclusion:
        events: list[dict[str, Any]] = []
        success = False
        for record in substrate.get_events(block_hash=block_hash):
            value = record.value
            if value.get("extrinsic_idx") != index:
                continue
            event = value["event"]
            name = f"{event['module_id']}.{event['event_id']}"
            if name == "System.ExtrinsicSuccess":
                success = True
            events.append({"event": name, "attributes": _plain(event.get("attributes"))})
        return Inclusion(block_hash, number, index, xt_hash, success, events)

    # ------------------------------------------------------------ for readers (the consumer)

    def block_extrinsics(self, number: int) -> tuple[str, list[bytes]] | None:
        """(block hash, raw extrinsics) of block `number`, None past the head."""

        def read(substrate: Any) -> tuple[str, list[bytes]] | None:
            block_hash = substrate.get_block_hash(number)
            if block_hash is None:
                return None
            block = substrate.rpc_request("chain_getBlock", [block_hash])["result"]["block"]
            return block_hash, [bytes.fromhex(x[2:]) for x in block["extrinsics"]]

        return self._guard(read)

    def decode_extrinsic(self, raw: bytes, block_hash: str) -> dict[str, Any]:
        """The extrinsic's call: {"call": "Pallet.function", "args": {name: value}, "signer": ss58|None}."""
        from scalecodec.base import ScaleBytes

        def dec(substrate: Any) -> dict[str, Any]:
            substrate.init_runtime(block_hash=block_hash)
            xt = substrate.runtime_config.create_scale_object(
                "Extrinsic", data=ScaleBytes(bytearray(raw)), metadata=substrate.metadata
            )
            xt.decode()
            call = xt.value_object["call"]
            args: dict[str, Any] = {}
            for field_obj in call.value_object["call_args"]:
                obj = field_obj.value_object["value"]
                held = obj.value_object
                # Vec<u8> arguments keep their exact bytes (scalecodec's .value turns UTF-8 into text).
                args[field_obj.value["name"]] = (
                    bytes(held) if isinstance(held, bytes | bytearray) else obj.value
                )
            return {
                "call": f"{call.value['call_module']}.{call.value['call_function']}",
                "args": args,
                "signer": xt.value.get("address"),
            }

        return self._guard(dec)

    def block_number(self) -> int:
        """The trusted head's number: the consumer reads only blocks that cannot be reverted."""
        return self._guard(lambda s: int(s.get_block_number(self._trusted_head(s))))


def _rejection(exc: Exception) -> ChainRejected:
    detail = exc.args[0] if exc.args else exc
    text = str(detail)
    lowered = text.lower()
    stale = "stale" in lowered or "outdated" in lowered
    known = "already imported" in lowered or "temporarily banned" in lowered or "already known" in lowered
    return ChainRejected(text, stale=stale, already_known=known)


def _plain(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
