"""The web console in a real headless browser (Debian's chromium driven by Playwright).

A stack of its own (`python -m gpuproof.local`, committee windows at their production length, so a
member's deadlines are hours away) is populated by the demo's flow: three admitted committee bots,
this host's probe (`benchmark-probe submit`, CPU backend) to a committee-confirmed machine, its
agent's heartbeats (GPU telemetry from the NVML test double, the hardware boundary), a host that
claims 8 H100s with a fabricated proof (refused), and a second machine drawn to the now idle
members (an open round: the member's countdown). Each page is loaded and what a person sees is
asserted; screenshots go to test-artifacts/console/ (gitignored).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from benchmark_probe.client import ServiceClient
from benchmark_probe.nvml_double import NvmlTestDouble, fake_gpu
from benchmark_probe.telemetry import Telemetry
from gpuproof.cli.operator import OperatorClient
from gpuproof.protocol.keys import SigningKey
from tests.unit.gpu_host_double import h100_inventory

from .api_client import OWNER, committee_bots
from .production_stack import ProductionStack, production_stack
from .test_attacks import H100, decided, forged_report, new_machine

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts" / "console"
CHART_JS = ROOT / "layers/core/gpuproof/console/static/chart.umd.min.js"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
OPERATOR = SigningKey.generate()


@dataclass
class Populated:
    stack: ProductionStack
    confirmed: str
    refused: str
    drawn: str
    member: str


def scored(api_url: str, machine_id: str) -> int:
    """The calc_point (x 100) the service scored the machine's latest report with."""
    doc = requests.get(f"{api_url}/machines/{machine_id}", timeout=10).json()
    return int(doc["reports"][0]["verification"]["evidence"]["calc_point"]["chain_value"])


def probe(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "benchmark_probe", *args], capture_output=True, text=True, check=False
    )


def submit_this_host(api: str, key: Path) -> str:
    """`benchmark-probe submit` until the report passes the automated stage: on a loaded machine
    the CPU backend may miss the proof's deadline (sized for a GPU), as a slow GPU would; the
    stack has no cooldown, so the owner's next step, submitting again, is taken at once."""
    assert probe("keygen", "--key", str(key), "--json").returncode == 0
    for _ in range(4):
        args = ["--api", api, "--owner", OWNER, "--region", "europe", "--key", str(key)]
        run = probe("submit", *args, "--quick", "--yes", "--json")  # --yes: a CPU-only host goes on
        assert run.returncode == 0, run.stdout + run.stderr
        machine_id = str(json.loads(run.stdout)["machine_id"])
        m = wait_state(api, machine_id, {"auto_verified", "committee", "confirmed", "published", "refused"})
        if m["state"] != "refused":
            return machine_id
        assert {r["code"] for r in m["state_reasons"]} == {"proof_deadline_missed"}, m
    raise AssertionError("the CPU backend missed the proof's deadline four times")


def wait_state(api: str, machine_id: str, states: set[str], timeout_s: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        m = requests.get(f"{api}/machines/{machine_id}", timeout=30).json()["machine"]
        if m["state"] in states:
            return dict(m)
        time.sleep(0.5)
    raise AssertionError(f"machine {machine_id} not in {states} after {timeout_s} s: {m}")


@pytest.fixture(scope="module")
def populated() -> Iterator[Populated]:
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is missing: `make browser` installs it (apt-get install chromium)")
    if not CHART_JS.exists():
        pytest.fail("the console's Chart.js is missing: `make console-assets` copies it from node_modules")
    params = (
        "AllowCpuBackend=true",
        f"CommitteeOperatorKey={OPERATOR.public_hex}",
        "ChallengeCooldownSeconds=0",
    )
    with ExitStack() as context:
        stack = context.enter_context(production_stack(*params))
        tmp = context.enter_context(tempfile.TemporaryDirectory())
        api = stack.api_url
        bots = context.enter_context(committee_bots(api, OperatorClient(api, OPERATOR), Path(tmp)))
        key_file = Path(tmp) / "machine.key"
        confirmed = submit_this_host(api, key_file)
        wait_state(api, confirmed, {"confirmed", "published"}, timeout_s=300)
        for bot in bots:
            bot.stop.set()  # idle from here on (joined when the module ends)
        # The agent's heartbeats: NVML answers from the test double (two H100s, a changing load).
        client = ServiceClient(api, SigningKey.load(key_file))
        nvml = NvmlTestDouble(gpus=[fake_gpu(0), fake_gpu(1)], xid_queue=[(1, 79)])
        telemetry = Telemetry(nvml)
        for beat in range(6):
            nvml.gpus = [
                fake_gpu(
                    i,
                    utilization_pct=15 * beat + 5 * i,
                    temperature_c=40 + 3 * beat,
                    ecc_corrected=beat * i,
                    remapped_rows=(i, 0, False, False),
                    throttle_mask=0x40 if i else 0,
                )
                for i in range(2)
            ]
            client.heartbeat(confirmed, telemetry.read(confirmed))
        # A host with no GPU claiming 8 H100s with a fabricated proof: refused.
        key, forger = new_machine(stack)
        challenge = forger.create_challenge(key.public_hex, {"claimed_gpu_model": H100, "gpu_count": 8})
        forged_report(forger, key, challenge, h100_inventory(8))
        assert decided(forger, key.public_hex)["state"] == "refused"
        # A second machine is drawn to the three members, idle now: the round stays open (36 h).
        drawn = submit_this_host(api, Path(tmp) / "second.key")
        wait_state(api, drawn, {"committee"})
        yield Populated(stack, confirmed, key.public_hex, drawn, bots[0].client.account)


@pytest.fixture(scope="module")
def browser(populated: Populated) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


def open_page(browser: Any, url: str, shot: str, **context: Any) -> Any:
    page = browser.new_context(**context).new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    response = page.goto(url, wait_until="networkidle")
    assert response is not None
    page.screenshot(path=str(ARTIFACTS / f"{shot}.png"), full_page=True)
    page.errors = errors
    return page, response


def test_the_overview_shows_the_network(populated: Populated, browser: Any) -> None:
    page, response = open_page(browser, populated.stack.api_url + "/", "overview")
    assert response.status == 200
    assert not page.errors, page.errors
    assert page.locator("h1").inner_text() == "Network overview"
    assert page.get_by_test_id("machines-total").inner_text() == "3"
    states = page.get_by_role("table").first.inner_text()
    assert "refused" in states and "committee" in states
    # The forged host's refusal, and any CPU run that missed the proof's deadline under load.
    refused, verified = map(
        int, re.search(r"\((\d+) of (\d+)\)", page.locator("#totals-h").locator("..").inner_text()).groups()
    )
    assert refused >= 1 and verified >= 3
    assert page.get_by_test_id("refusal-rate").inner_text() == f"{100 * refused / verified:.1f} %"
    # The confirmed machine's calc_point as the service scored it: 0, its RAM proven only at the
    # CPU claim's test size (a CPU-backend machine: docs/scoring.md, docs/protocol.md §17.10).
    assert int(page.get_by_test_id("calc-point-total").inner_text().replace(",", "")) == scored(
        populated.stack.api_url, populated.confirmed
    )
    assert page.locator("#chart-per-day").get_attribute("data-rendered") == "true"
    assert page.get_by_role("link", name=populated.confirmed).count() == 1
    assert not page.errors, page.errors


def test_a_verified_machine_shows_its_verdicts_calc_point_and_charts(
    populated: Populated, browser: Any
) -> None:
    url = f"{populated.stack.api_url}/console/machines/{populated.confirmed}"
    page, response = open_page(browser, url, "machine-verified")
    assert response.status == 200
    assert page.get_by_test_id("state").inner_text() in {"confirmed", "published"}
    assert "Next step" in page.locator("#state-h").locator("..").inner_text()
    history = page.get_by_test_id("history").inner_text()
    assert "committee round 1" in history and "automated verification" in history and "passed" in history
    breakdown = page.get_by_test_id("breakdown").inner_text()
    # RAM proven by the CPU claim's test-size capacity phase: 32 KiB, 0 GiB (docs/protocol.md §17.10)
    assert "RAM_GB\t0\tproven" in breakdown and "declared" in breakdown
    assert int(page.get_by_test_id("calc-point").inner_text().replace(",", "")) == scored(
        populated.stack.api_url, populated.confirmed
    )
    assert "gemm_fp32" in page.get_by_test_id("benchmarks").inner_text()
    assert page.locator("#chart-proof").get_attribute("data-rendered") == "true"
    assert "6 heartbeats" in page.get_by_test_id("telemetry-summary").inner_text()
    for chart in ("gpu-utilization_pct", "gpu-temperature_c", "gpu-power_w", "host-cpu_percent"):
        assert page.locator(f"#chart-{chart}").get_attribute("data-rendered") == "true", chart
    caption = page.locator("#chart-gpu-utilization_pct").locator("..").locator("figcaption").inner_text()
    assert "GPU 0 75" in caption and "GPU 1 80" in caption  # the latest beat: 15 * 5 + 5 * i
    health = page.get_by_test_id("health").inner_text()
    assert "hw_thermal_slowdown" in health and "remapped rows (correctable)" in health
    assert "79" in page.get_by_test_id("xid-events").inner_text()
    assert page.locator("#chart-gpu-ecc_corrected").get_attribute("data-rendered") == "true"
    assert not page.errors, page.errors


def test_a_refused_machine_shows_why_and_what_to_do(populated: Populated, browser: Any) -> None:
    url = f"{populated.stack.api_url}/console/machines/{populated.refused}"
    page, response = open_page(browser, url, "machine-refused")
    assert response.status == 200
    assert page.get_by_test_id("state").inner_text() == "refused"
    reasons = page.get_by_test_id("state-reasons").inner_text()
    assert "proof_" in reasons
    assert "fix what the reasons name" in page.get_by_test_id("next-step").inner_text()
    assert "refused" in page.get_by_test_id("history").inner_text()
    assert "fail" in page.get_by_test_id("checks").inner_text()
    assert not page.errors, page.errors


def test_a_member_sees_its_assignments_with_a_countdown(populated: Populated, browser: Any) -> None:
    url = f"{populated.stack.api_url}/console/members/{populated.member}"
    page, response = open_page(browser, url, "member")
    assert response.status == 200
    items = page.get_by_test_id("assignments").inner_text()
    assert populated.confirmed in items and populated.drawn in items
    countdown = page.get_by_test_id("countdown")
    assert countdown.count() == 1
    first = countdown.inner_text()
    assert first.startswith("1 d ") or first.startswith("35 h"), first  # commits close 36 h after the draw
    page.get_by_text("The draw's data (recomputable)").first.click()
    assert "Beacon value" in page.get_by_test_id("assignments").inner_text()
    assert not page.errors, page.errors


def test_pages_work_on_a_phone_and_with_the_keyboard(populated: Populated, browser: Any) -> None:
    url = f"{populated.stack.api_url}/console/machines/{populated.confirmed}"
    phone = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}
    page, _ = open_page(browser, url, "machine-phone", **phone)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page scrolls sideways on a phone ({width} px)"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"


def test_unknown_pages_say_so(populated: Populated, browser: Any) -> None:
    page, response = open_page(
        browser, populated.stack.api_url + "/console/machines/" + "0" * 64, "not-found"
    )
    assert response.status == 404
    assert "no machine is registered" in page.locator("main").inner_text()
    assert (
        requests.get(
            populated.stack.api_url + "/console/static/..%2Ftemplates%2Fbase.html", timeout=10
        ).status_code
        == 404
    )
    assert requests.get(populated.stack.api_url + "/console/members/zz", timeout=10).status_code == 404


def test_the_operator_page_shows_queues_unsettled_verdicts_and_says_alarms_are_not_local(
    populated: Populated, browser: Any
) -> None:
    page, response = open_page(browser, populated.stack.api_url + "/console/operator", "operator")
    assert response.status == 200
    queues = page.get_by_test_id("queues").inner_text()
    assert "VerifyQueue" in queues and "VerifyDLQ" in queues and "PublisherDLQ" in queues
    assert "No dead letter." in page.locator("main").inner_text()
    # No chain in this stack: the committee's verdict stays in VerdictsTable, not yet on chain.
    assert f"{populated.confirmed}:1" in page.get_by_test_id("unsettled").inner_text()
    missing = page.get_by_test_id("alarms-missing").inner_text()
    assert "11 of the stack's 11 alarms are not in CloudWatch here" in missing
    assert "not available locally" in missing
    assert not page.errors, page.errors
