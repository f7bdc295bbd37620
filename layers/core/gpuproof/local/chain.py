"""The local chain: Chopsticks (npm @acala-network/chopsticks) on 127.0.0.1 from a real genesis.

The runtime is Rococo Asset Hub's genesis, from the raw chain spec shipped in npm
@substrate/connect-known-chains: real sr25519 signature checks, fees, nonces, mortality,
`System.remark_with_event` and events. Accounts are funded through Chopsticks' storage import
(`-s`, System.Account) at start and `dev_setStorage` afterwards. Blocks are built when an
extrinsic arrives (build-block-mode Instant). Both packages come from package.json /
package-lock.json (`npm ci --ignore-scripts`, run by make).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

from gpuproof.local.moto_server import HOST, free_port

log = logging.getLogger("gpuproof_local")

CHOPSTICKS_BIN = Path("@acala-network/chopsticks/chopsticks.cjs")
SPEC_MODULE = Path("@substrate/connect-known-chains/dist/esm/specs/rococo_v2_2_asset_hub.js")
MIN_NODE_MAJOR = 20
FUNDS = "1000000000000000000000"  # 10^9 ROC (12 decimals): fees for millions of batches


class ChainUnavailableLocally(RuntimeError):
    """Node or the npm packages are missing: the reason says which and how to fix it."""


def find_node_modules(start: Path | None = None) -> Path | None:
    """node_modules holding Chopsticks: $GPUPROOF_NODE_MODULES, else the nearest one above start/cwd/here."""
    explicit = os.environ.get("GPUPROOF_NODE_MODULES")
    if explicit:
        return Path(explicit)
    for base in [start or Path.cwd(), Path(__file__).resolve()]:
        for directory in [base, *base.parents]:
            candidate = directory / "node_modules"
            if (candidate / CHOPSTICKS_BIN).is_file():
                return candidate
    return None


def unavailable_reason(node_modules: Path | None = None) -> str | None:
    """None when Chopsticks can run here; otherwise why not."""
    node = shutil.which("node")
    if node is None:
        return "node is not on PATH (Node.js >= 20 runs Chopsticks)"
    try:
        version = subprocess.run(  # noqa: S603 - fixed argv
            [node, "--version"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        major = int(version.lstrip("v").split(".")[0])
    except (subprocess.SubprocessError, ValueError, OSError) as exc:
        return f"cannot run node --version: {exc}"
    if major < MIN_NODE_MAJOR:
        return f"node {version} is older than v{MIN_NODE_MAJOR}"
    nm = node_modules or find_node_modules()
    if nm is None or not (nm / CHOPSTICKS_BIN).is_file():
        return "node_modules has no @acala-network/chopsticks: run `npm ci --ignore-scripts` (make does)"
    if not (nm / SPEC_MODULE).is_file():
        return f"node_modules has no {SPEC_MODULE}: run `npm ci --ignore-scripts`"
    return None


def chain_spec_file(node_modules: Path) -> Path:
    """The Rococo Asset Hub raw chain spec as a JSON file (extracted once from the npm module)."""
    out = node_modules / ".cache" / "gpuproof" / "rococo_v2_2_asset_hub.json"
    module = node_modules / SPEC_MODULE
    if out.is_file() and out.stat().st_mtime >= module.stat().st_mtime:
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    script = (
        "import(process.argv[1]).then(m => process.stdout.write(m.chainSpec))"
        ".catch(e => { console.error(e); process.exit(1); })"
    )
    node = shutil.which("node") or "node"
    spec = subprocess.run(  # noqa: S603 - fixed argv
        [node, "-e", script, module.resolve().as_uri()], capture_output=True, check=True, timeout=60
    ).stdout
    json.loads(spec)  # it must be JSON
    tmp = out.with_suffix(".tmp")
    tmp.write_bytes(spec)
    tmp.replace(out)
    return out


def _rpc(url: str, method: str, params: list[Any], timeout: float = 5.0) -> Any:
    body = json.dumps({"id": 1, "jsonrpc": "2.0", "method": method, "params": params}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})  # noqa: S310
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - loopback http
        doc = json.loads(response.read())
    if "error" in doc:
        raise RuntimeError(f"{method}: {doc['error']}")
    return doc.get("result")


def account_storage(accounts: list[str], free: str = FUNDS) -> dict[str, Any]:
    """Chopsticks storage (import file or dev_setStorage) that funds `accounts` (SS58 or 0x hex)."""
    entries = [[[a], {"providers": 1, "data": {"free": free}}] for a in accounts]
    return {"System": {"Account": entries}}


class LocalChain:
    """One Chopsticks process; `url` is its WebSocket endpoint. Restartable on the same port."""

    def __init__(
        self,
        *,
        fund: list[str] | None = None,
        host: str = HOST,
        port: int = 0,
        node_modules: Path | None = None,
        start_timeout_s: float = 60.0,
    ) -> None:
        self.fund = list(fund or [])
        self.host = host
        self.port = port or free_port(host)
        self.node_modules = node_modules or find_node_modules()
        self.start_timeout_s = start_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._workdir = Path(tempfile.mkdtemp(prefix="gpuproof-chain-"))
        self.log_path = self._workdir / "chopsticks.log"
        self.adopted = False  # run by another process (adopt): never started, stop() leaves it

    @classmethod
    def adopt(cls, url: str) -> LocalChain:
        """A chain node already running at `url` (ws://host:port), started by another process:
        this object funds accounts on it and reads its url, but never starts or stops it."""
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("ws", "http") or not parsed.hostname or not parsed.port:
            raise ValueError(f"not a local chain endpoint (ws://host:port): {url!r}")
        chain = cls(host=parsed.hostname, port=parsed.port)
        chain.adopted = True
        return chain

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> LocalChain:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> LocalChain:
        if self.running:
            return self
        if self.adopted:
            raise ChainUnavailableLocally(f"{self.url} is another process's chain: it is not started here")
        reason = unavailable_reason(self.node_modules)
        if reason is not None:
            raise ChainUnavailableLocally(reason)
        assert self.node_modules is not None
        spec = chain_spec_file(self.node_modules)
        storage = self._workdir / "storage.json"
        storage.write_text(json.dumps(account_storage(self.fund)))
        argv = [
            shutil.which("node") or "node",
            str(self.node_modules / CHOPSTICKS_BIN),
            "--genesis", str(spec),
            "--host", self.host,
            "--port", str(self.port),
            "--build-block-mode", "Instant",
            "--import-storage", str(storage),
        ]  # fmt: skip
        started = time.monotonic()
        with self.log_path.open("ab") as logfile:
            # Chopsticks reads LOG_LEVEL too (lowercase names); the stack's LOG_LEVEL=INFO would stop it.
            env = {**os.environ, "LOG_LEVEL": os.environ.get("GPUPROOF_CHAIN_LOG_LEVEL", "warn")}
            self._proc = subprocess.Popen(  # noqa: S603 - argv built above
                argv,
                env=env,
                stdout=logfile,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        try:
            self._wait_ready(started)
        except BaseException:
            self.stop()
            raise
        log.info("local chain up: %s (%.1f s)", self.url, time.monotonic() - started)
        return self

    def _wait_ready(self, started: float) -> None:
        while True:
            if self._proc is not None and self._proc.poll() is not None:
                raise ChainUnavailableLocally(
                    f"chopsticks exited ({self._proc.returncode}): {self.log_tail()}"
                )
            try:
                if _rpc(self.http_url, "chain_getHeader", [], timeout=2):
                    return
            except (urllib.error.URLError, ConnectionError, OSError, RuntimeError, TimeoutError):
                pass
            if time.monotonic() - started > self.start_timeout_s:
                raise ChainUnavailableLocally(
                    f"chopsticks did not answer in {self.start_timeout_s} s: {self.log_tail()}"
                )
            time.sleep(0.2)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        # The process leads its own session (start_new_session): signal that group, ours alone.
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        except ProcessLookupError:
            pass

    def restart(self) -> LocalChain:
        """Stop and start again on the same port: a fresh chain from genesis, accounts re-funded."""
        self.stop()
        return self.start()

    def reset(self) -> LocalChain:
        """What `restart` gives, without a new process (whose start takes 10-40 s on 2 cores): the
        head set back to genesis (Chopsticks' dev_setHead), so every later block and the nonces in
        them are gone, and the accounts re-funded. Started first if it is not running."""
        if not self.running:
            return self.start()
        self.rpc("dev_setHead", [self.rpc("chain_getBlockHash", [0])])
        head = int(self.rpc("chain_getHeader")["number"], 16)
        if head != 0:
            raise ChainUnavailableLocally(f"{self.url} did not go back to genesis (head #{head})")
        if self.fund:
            self.add_funds(self.fund)
        return self

    def add_funds(self, accounts: list[str]) -> None:
        """Fund more accounts on the running chain (dev_setStorage); they stay funded on restart."""
        self.fund.extend(a for a in accounts if a not in self.fund)
        _rpc(self.http_url, "dev_setStorage", [account_storage(accounts)])

    def ensure_funded(self, account: str) -> bool:
        """Fund `account` unless it has sent an extrinsic already (then it was funded before, e.g. by
        a stack that ran here earlier). Chopsticks' storage write replaces the whole System.Account
        entry, its nonce included: re-funding a used account would reset its nonce, and an
        extrinsic a killed stack left pending could then be signed again with a reused nonce."""
        if int(self.rpc("system_accountNextIndex", [account])) > 0:
            return False
        self.add_funds([account])
        return True

    def rpc(self, method: str, params: list[Any] | None = None) -> Any:
        return _rpc(self.http_url, method, params or [])

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(line for line in text[-lines:] if "multiple versions" not in line)


def oracle_account_from_environment() -> str:
    """The publisher's oracle account (0x public key), from ORACLE_SURI or the template's secret."""
    import boto3

    from gpuproof.chain.adapter import ChainSettings, load_oracle_secret, oracle_keypair
    from gpuproof.local.template import LOCAL_REGION

    settings = ChainSettings.from_env()
    client = boto3.client("secretsmanager", region_name=os.environ.get("AWS_DEFAULT_REGION", LOCAL_REGION))
    keypair = oracle_keypair(load_oracle_secret(settings, client))
    return "0x" + bytes(keypair.public_key).hex()


def start_for_stack(port: int = 0) -> LocalChain:
    """A chain that funds the stack's oracle account (the stack's environment must be set)."""
    return LocalChain(fund=[oracle_account_from_environment()], port=port).start()
