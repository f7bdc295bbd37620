"""The web console (functions/console): server-rendered HTML pages of public data, read only.

Pages: `GET /` (the network), `GET /console/machines/{machine_id}`, `GET /console/members/{account}`,
`GET /console/operator` (queues, DLQs, verdicts not yet on chain, alarms);
assets under `GET /console/static/{name}` come from this package (no CDN): console.css,
console.js and the charting library Chart.js, copied from node_modules by `make console-assets`.
Templates are Jinja2 with autoescaping on; every page works without JavaScript except the charts
and the live countdowns, whose figures are also printed in the page.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from jinja2 import Environment, PackageLoader, select_autoescape

from gpuproof.api.wiring import console_services
from gpuproof.logic import console as logic

HEX64 = re.compile(r"^[0-9a-f]{64}$")
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}
HTML = "text/html; charset=utf-8"
# Public pages of public data; a short cache keeps a busy page from reading the tables every hit.
CACHE = "public, max-age=15"
SECURITY_HEADERS = {
    # Everything is served from this API: no inline script, no other origin.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _when(ts: Any) -> str:
    if not isinstance(ts, (int, float)):
        return "—"
    return datetime.fromtimestamp(float(ts), UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _iso(ts: Any) -> str:
    if not isinstance(ts, (int, float)):
        return ""
    return datetime.fromtimestamp(float(ts), UTC).isoformat().replace("+00:00", "Z")


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)):
        return "—"
    s = int(abs(seconds))
    d, rest = divmod(s, 86400)
    h, rest = divmod(rest, 3600)
    m, sec = divmod(rest, 60)
    parts = [f"{d} d"] if d else []
    if h or d:
        parts.append(f"{h} h")
    if not d:
        parts.append(f"{m} min")
    if not d and not h:
        parts.append(f"{sec} s")
    return " ".join(parts)


def _pct(value: Any) -> str:
    return "—" if not isinstance(value, (int, float)) else f"{100 * value:.1f} %"


def _num(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "—" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.4g}"


def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("gpuproof.console", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(when=_when, iso=_iso, duration=_duration, pct=_pct, num=_num)
    env.globals["guide"] = logic.guide
    return env


ENV = environment()


def page(template: str, status: int = 200, **context: Any) -> Response[str]:
    html = ENV.get_template(template).render(**context)
    headers = {**SECURITY_HEADERS, "Cache-Control": CACHE if status == 200 else "no-store"}
    return Response(status_code=status, content_type=HTML, body=html, headers=headers)


def not_found(what: str) -> Response[str]:
    return page("not_found.html", 404, title="Not found", what=what)


def static_asset(name: str) -> tuple[str, str] | None:
    """A file of console/static by its plain name; None for anything else (no path escapes)."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name) or name.startswith("."):
        return None
    suffix = name[name.rfind(".") :] if "." in name else ""
    if suffix not in STATIC_TYPES:
        return None
    target = resources.files("gpuproof.console").joinpath("static").joinpath(name)
    if not target.is_file():
        return None
    return target.read_text(encoding="utf-8"), STATIC_TYPES[suffix]


def build() -> APIGatewayHttpResolver:
    app = APIGatewayHttpResolver()

    @app.get("/")
    def overview() -> Response[str]:
        svc = console_services()
        return page("overview.html", title="Network", net=logic.network(svc), now=svc.clock.now())

    @app.get("/console/machines/<machine_id>")
    def machine(machine_id: str) -> Response[str]:
        if not HEX64.fullmatch(machine_id):
            return not_found("a machine id is 64 lowercase hex digits")
        svc = console_services()
        view = logic.machine_page(svc, machine_id)
        if view is None:
            return not_found("no machine is registered with this id")
        return page("machine.html", title=f"Machine {machine_id[:12]}…", v=view, now=svc.clock.now())

    @app.get("/console/members/<account>")
    def member(account: str) -> Response[str]:
        if not HEX64.fullmatch(account):
            return not_found("a member account is 64 lowercase hex digits (its Ed25519 public key)")
        svc = console_services()
        view = logic.member_page(svc, account)
        if view is None:
            return not_found("no committee member has this account")
        return page("member.html", title=f"Member {account[:12]}…", v=view, now=svc.clock.now())

    @app.get("/console/operator")
    def operator() -> Response[str]:
        svc = console_services()
        return page("operator.html", title="Operator", v=logic.operator_page(svc), now=svc.clock.now())

    @app.get("/console/static/<name>")
    def static(name: str) -> Response[str]:
        found = static_asset(name)
        if found is None:
            return not_found("no such console asset")
        body, content_type = found
        headers = {"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"}
        return Response(status_code=200, content_type=content_type, body=body, headers=headers)

    @app.not_found
    def missing(_: Exception) -> Response[str]:
        return not_found("no console page at this address")

    return app


app = build()
