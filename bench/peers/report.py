"""The cases, the goals, the Kubepredict/MLServer ratios with their verdicts, the tables and the JSON."""

from __future__ import annotations

from dataclasses import dataclass

MLSERVER = "MLServer"
# The same peer on its own best case: a bare estimator fitted on raw numpy features, one 2-D FP64
# tensor per request (MLServer's default numpy codec; no pandas, no preprocessing). Kubepredict is
# compared with the faster of the two MLServer rows, and its p99 with the lower of their p99s.
MLSERVER_BARE = "MLServer, bare estimator (np)"
# ...and with inference in its own process (parallel_workers: 0): no hand-off to a worker process.
MLSERVER_INPROC = "MLServer, bare, parallel_workers=0"
PEERS = (MLSERVER, MLSERVER_BARE, MLSERVER_INPROC)


@dataclass(frozen=True)
class Case:
    model: str  # the model name on both servers
    label: str
    rows: int
    concurrency: int
    min_ratio: float  # Kubepredict / MLServer, on req/s (rows/s for multi-row requests)
    p99: bool  # also p99 <= MLServer's p99

    @property
    def metric(self) -> str:
        return "rows_s" if self.rows > 1 else "req_s"


CASES = (
    Case("iris-lr", "LR 1 row", 1, 1, 1.5, True),
    Case("iris-lr", "LR 1 row", 1, 8, 1.5, True),
    Case("iris-lr", "LR 100 rows", 100, 8, 2.0, False),
    Case("iris-rf", "RF(100) 1 row", 1, 1, 1.0, False),
    Case("iris-rf", "RF(100) 1 row", 1, 8, 1.0, False),
)


def cell(server: str, case: Case, result: dict | None = None, error: str | None = None) -> dict:
    """One table cell: a server on a case, with its wrk figures or an error (never both)."""
    out = {"server": server, "case": case.label, "model": case.model, "rows": case.rows, "c": case.concurrency}
    if error or result is None or result.get("error"):
        out["error"] = error or (result or {}).get("error") or "no result"
        return out
    out.update(
        req_s=result["req_s"],
        rows_s=result["req_s"] * case.rows,
        p50_ms=result["p50_ms"],
        p99_ms=result["p99_ms"],
        requests=result["requests"],
        seconds=result["seconds"],
    )
    return out


def _find(cells: list[dict], server: str, case: Case) -> dict | None:
    return next(
        (c for c in cells if c["server"] == server and c["case"] == case.label and c["c"] == case.concurrency), None
    )


def _peer(cells: list[dict], case: Case) -> dict | None:
    """The strongest MLServer figure for ``case``: the highest throughput, with the lowest p99 of them."""
    found = [c for c in (_find(cells, s, case) for s in PEERS) if c is not None]
    ok = [c for c in found if "error" not in c]
    if not ok:
        return found[0] if found else None
    best = max(ok, key=lambda c: c[case.metric])
    return {**best, "p99_ms": min(c["p99_ms"] for c in ok)}


def ratios(cells: list[dict], servers: list[str], cases=CASES) -> list[dict]:
    """Kubepredict/MLServer (its best row) per server and case with PASS/FAIL/ERROR against the goals, plus, per server,
    the "c=8 throughput >= c=1 throughput" goal on the LR 1-row case."""
    out = []
    for server in servers:
        for case in cases:
            kp, ml = _find(cells, server, case), _peer(cells, case)
            if kp is None or ml is None:
                continue
            row = {
                "server": server,
                "case": case.label,
                "c": case.concurrency,
                "metric": case.metric,
                "goal": f">= {case.min_ratio:g}x {case.metric.replace('_', '/')}"
                + (", p99 <= MLServer" if case.p99 else ""),
            }
            if "error" in kp or "error" in ml:
                row.update(verdict="ERROR", detail=kp.get("error") or f"MLServer: {ml.get('error')}")
            else:
                ratio = kp[case.metric] / ml[case.metric] if ml[case.metric] else float("inf")
                p99_ok = kp["p99_ms"] <= ml["p99_ms"]
                ok = ratio >= case.min_ratio and (p99_ok or not case.p99)
                row.update(
                    ratio=ratio,
                    p99_ratio=kp["p99_ms"] / ml["p99_ms"] if ml["p99_ms"] else None,
                    verdict="PASS" if ok else "FAIL",
                )
            out.append(row)
        one, eight = (_find(cells, server, c) for c in cases[:2])
        if one is not None and eight is not None:
            row = {
                "server": server,
                "case": "LR 1 row",
                "c": "8 vs 1",
                "metric": "req_s",
                "goal": "c=8 req/s >= c=1 req/s",
            }
            if "error" in one or "error" in eight:
                row.update(verdict="ERROR", detail=one.get("error") or eight.get("error"))
            else:
                row.update(ratio=eight["req_s"] / one["req_s"] if one["req_s"] else float("inf"))
                row["verdict"] = "PASS" if eight["req_s"] >= one["req_s"] else "FAIL"
            out.append(row)
    return out


def print_tables(cells: list[dict], ratio_rows: list[dict], title: str, notes: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=150)
    table = Table(title=title)
    for col in ("server", "case", "c", "req/s", "rows/s", "p50 ms", "p99 ms"):
        table.add_column(col, justify="left" if col in ("server", "case") else "right")
    for c in cells:
        if "skipped" in c:
            table.add_row(c["server"], c["case"], str(c["c"]), f"[dim]{c['skipped']}[/dim]", "", "", "")
        elif "error" in c:
            table.add_row(c["server"], c["case"], str(c["c"]), f"[red]error: {c['error']}[/red]", "", "", "")
        else:
            table.add_row(
                c["server"],
                c["case"],
                str(c["c"]),
                f"{c['req_s']:,.0f}",
                f"{c['rows_s']:,.0f}",
                f"{c['p50_ms']:.2f}",
                f"{c['p99_ms']:.2f}",
            )
    console.print(table)
    ratio_table = Table(title="Kubepredict / MLServer, against the goals")
    for col in ("server", "case", "c", "ratio", "p99 ratio", "goal", "verdict"):
        ratio_table.add_column(col)
    colour = {"PASS": "green", "FAIL": "red", "ERROR": "red"}
    for r in ratio_rows:
        ratio = f"{r['ratio']:.2f}x" if "ratio" in r else r.get("detail", "")
        p99 = f"{r['p99_ratio']:.2f}x" if r.get("p99_ratio") is not None else ""
        ratio_table.add_row(
            r["server"], r["case"], str(r["c"]), ratio, p99, r["goal"], f"[{colour[r['verdict']]}]{r['verdict']}[/]"
        )
    console.print(ratio_table)
    for note in notes:
        console.print(f"- {note}")
