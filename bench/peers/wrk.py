"""``wrk`` as the load generator: install check, the POST script, one run, and its output parsed.

The Lua script counts every answer outside 2xx itself (wrk's own "Non-2xx or 3xx" line lets 3xx
through) and prints ``non-2xx responses: N`` from ``done()``; any such answer or socket error turns
the cell into an error instead of a figure.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}

_LATENCY = re.compile(r"^\s*(50|75|90|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.M)
_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)\s*$", re.M)
_TOTAL = re.compile(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h),", re.M)
_SOCKET = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_WRK_NON2XX3XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")
_OUR_NON2XX = re.compile(r"^non-2xx responses: (\d+)\s*$", re.M)


class WrkMissing(RuntimeError):
    pass


@dataclass
class WrkResult:
    """One timed run. ``error`` is set (and the figures must not be shown) when anything failed."""

    requests: int
    seconds: float
    req_s: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int
    error: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def parse(output: str) -> WrkResult:
    """Parse ``wrk --latency`` output (plus our script's ``non-2xx responses`` line)."""
    rps = _RPS.search(output)
    total = _TOTAL.search(output)
    latency = {int(p): float(v) * UNITS_MS[u] for p, v, u in _LATENCY.findall(output)}
    if not rps or not total or 50 not in latency or 99 not in latency:
        raise ValueError("not wrk --latency output:\n" + output[-2000:])
    socket = _SOCKET.search(output)
    socket_errors = sum(map(int, socket.groups())) if socket else 0
    ours = _OUR_NON2XX.search(output)
    theirs = _WRK_NON2XX3XX.search(output)
    non_2xx = max(int(ours.group(1)) if ours else 0, int(theirs.group(1)) if theirs else 0)
    requests = int(total.group(1))
    problems = []
    if non_2xx:
        problems.append(f"{non_2xx} non-2xx")
    if socket_errors:
        problems.append(f"{socket_errors} socket errors ({socket.group(0)})")
    if requests == 0:
        problems.append("no request completed")
    return WrkResult(
        requests=requests,
        seconds=float(total.group(2)) * UNITS_MS[total.group(3)] / 1e3,
        req_s=float(rps.group(1)),
        p50_ms=latency[50],
        p99_ms=latency[99],
        non_2xx=non_2xx,
        socket_errors=socket_errors,
        error="; ".join(problems) or None,
    )


def lua_long_string(text: str) -> str:
    """``text`` as a Lua long-bracket literal that cannot be closed early by the text itself."""
    level = 0
    while f"]{'=' * level}]" in text:
        level += 1
    eq = "=" * level
    return f"[{eq}[{text}]{eq}]"


def post_script(body: bytes, content_type: str = "application/json") -> str:
    """A wrk script that POSTs ``body`` and counts answers outside 2xx across all threads."""
    return "\n".join(
        [
            'wrk.method = "POST"',
            f"wrk.body = {lua_long_string(body.decode())}",
            f'wrk.headers["Content-Type"] = "{content_type}"',
            "local threads = {}",
            "function setup(thread) table.insert(threads, thread) end",
            "function init(args) bad = 0 end",
            "function response(status, headers, body)",
            "  if status < 200 or status > 299 then bad = bad + 1 end",
            "end",
            "function done(summary, latency, requests)",
            "  local n = 0",
            '  for _, t in ipairs(threads) do n = n + t:get("bad") end',
            '  io.write(string.format("non-2xx responses: %d\\n", n))',
            "end",
            "",
        ]
    )


def ensure_wrk() -> str:
    """Path of ``wrk``; installs the Debian package when missing and we are root, else fails clearly."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise WrkMissing("wrk is not installed: run `sudo apt-get install -y wrk` (Debian/Ubuntu) and retry")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "wrk"]
    if subprocess.run(install, env=env, capture_output=True, timeout=600).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=600)
        done = subprocess.run(install, env=env, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise WrkMissing(f"`apt-get install -y wrk` failed:\n{done.stderr[-2000:]}")
    found = shutil.which("wrk")
    if not found:
        raise WrkMissing("wrk still not on PATH after apt-get install")
    return found


def run(
    url: str, script: Path, *, connections: int, threads: int, seconds: float, wrk: str = "wrk", timeout_s: float = 5.0
) -> WrkResult:
    """One ``wrk --latency`` run against ``url``; a crash or unparseable output is an error result."""
    cmd = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        f"--timeout={timeout_s:g}s",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + timeout_s + 60)
    except subprocess.TimeoutExpired:
        return failed("wrk did not finish in time")
    if done.returncode != 0:
        return failed(f"wrk exited {done.returncode}: {(done.stderr or done.stdout)[-500:]}")
    try:
        return parse(done.stdout)
    except ValueError as exc:
        return failed(str(exc)[:500])


def failed(reason: str) -> WrkResult:
    return WrkResult(
        requests=0, seconds=0.0, req_s=0.0, p50_ms=0.0, p99_ms=0.0, non_2xx=0, socket_errors=0, error=reason
    )
