"""The peers benchmark's instrument (``bench/peers``) without running wrk or MLServer: wrk output captured
from real runs is parsed, the Lua script carries any body, goals turn figures into verdicts."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from bench.peers import mlserver, report, wrk

# wrk 4.1 with bench.peers' own script, a 2xx server (note the microsecond p50).
OK = """Running 2s test @ http://127.0.0.1:18778/ok
  1 threads and 1 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.37ms    5.43ms  59.33ms   94.96%
    Req/Sec   763.60    198.02     1.21k    60.00%
  Latency Distribution
     50%  630.00us
     75%    2.51ms
     90%    5.02ms
     99%   32.83ms
  1548 requests in 2.05s, 170.93KB read
Requests/sec:    754.38
Transfer/sec:     83.30KB
non-2xx responses: 0
"""

# A server answering 501 to every POST.
NON_2XX = """Running 1s test @ http://127.0.0.1:18777/
  2 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     7.99ms    4.35ms  29.37ms   79.25%
    Req/Sec   374.50    143.18   640.00     63.64%
  Latency Distribution
     50%    6.85ms
     75%    9.70ms
     90%   13.92ms
     99%   21.49ms
  821 requests in 1.10s, 445.17KB read
  Non-2xx or 3xx responses: 821
Requests/sec:    747.15
Transfer/sec:    405.13KB
non-2xx responses: 821
"""

# A server slower than wrk's --timeout=1s.
TIMEOUTS = """Running 3s test @ http://127.0.0.1:18778/slow
  2 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     0.00us    0.00us   0.00us    -nan%
    Req/Sec     4.33      7.71    20.00     83.33%
  Latency Distribution
     50%    0.00us
     75%    0.00us
     90%    0.00us
     99%    0.00us
  12 requests in 3.01s, 1.32KB read
  Socket errors: connect 0, read 0, write 0, timeout 12
Requests/sec:      3.99
Transfer/sec:     450.78B
non-2xx responses: 0
"""

# Plain wrk (no script): no "non-2xx responses" line, seconds-scale p99.
PLAIN = """Running 10s test @ http://127.0.0.1:8080/function/predict
  2 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    52.30ms   20.11ms   1.20s    90.00%
    Req/Sec    76.50     10.20   100.00     70.00%
  Latency Distribution
     50%   50.20ms
     75%   60.00ms
     90%   80.00ms
     99%    1.20s
  1530 requests in 10.01s, 500.00KB read
Requests/sec:    152.85
Transfer/sec:     49.95KB
"""


def test_parses_figures_and_units():
    r = wrk.parse(OK)
    assert (r.requests, r.seconds, r.req_s) == (1548, 2.05, 754.38)
    assert r.p50_ms == pytest.approx(0.63) and r.p99_ms == pytest.approx(32.83)
    assert (r.non_2xx, r.socket_errors, r.error) == (0, 0, None)
    plain = wrk.parse(PLAIN)
    assert plain.p99_ms == pytest.approx(1200.0) and plain.p50_ms == pytest.approx(50.2)
    assert plain.error is None and plain.req_s == 152.85


def test_non_2xx_answers_make_an_error_not_a_figure():
    r = wrk.parse(NON_2XX)
    assert r.non_2xx == 821 and r.error and "821 non-2xx" in r.error
    cell = report.cell("Kubepredict gateway", report.CASES[0], r.as_dict())
    assert "error" in cell and "req_s" not in cell


def test_socket_errors_make_an_error():
    r = wrk.parse(TIMEOUTS)
    assert r.socket_errors == 12 and "timeout 12" in r.error


def test_our_count_catches_what_wrk_lets_through():
    """wrk's own line counts neither 2xx nor 3xx; the script's count (3xx included) wins."""
    r = wrk.parse(OK.replace("non-2xx responses: 0", "non-2xx responses: 3"))
    assert r.non_2xx == 3 and r.error


def test_rejects_output_that_is_not_wrk_latency_output():
    with pytest.raises(ValueError):
        wrk.parse("unable to connect to 127.0.0.1:1 Connection refused\n")
    with pytest.raises(ValueError):  # without --latency there is no distribution
        wrk.parse(re.sub(r"  Latency Distribution\n(.*\n){4}", "", OK))


def test_post_script_carries_any_body_verbatim():
    body = '{"a": "]]", "b": "]=]", "c": "\\"quoted\\" \\\\ back"}'
    script = wrk.post_script(body.encode())
    m = re.search(r"wrk\.body = \[(=*)\[(.*?)\]\1\]\n", script, re.S)
    assert m and m.group(2) == body and m.group(1) == "=="
    assert 'wrk.method = "POST"' in script and "application/json" in script
    assert "status < 200 or status > 299" in script


def test_ratios_verdicts_against_the_goals():
    lr1, lr8, lr100, rf1, rf8 = report.CASES
    kp = "Kubepredict gateway"
    figures = {  # case: (MLServer req/s, p99, Kubepredict req/s, p99)
        lr1: (1000, 2.0, 1600, 1.5),  # 1.6x, p99 lower → PASS
        lr8: (1400, 8.0, 2200, 9.0),  # 1.57x but p99 higher → FAIL
        lr100: (100, 50, 150, 80),  # rows/s 1.5x < 2x → FAIL (p99 not a goal here)
        rf1: (300, 5, 300, 9),  # 1.0x → PASS
    }
    cells = []
    for case, (ml_rps, ml_p99, kp_rps, kp_p99) in figures.items():
        for server, rps, p99 in ((report.MLSERVER, ml_rps, ml_p99), (kp, kp_rps, kp_p99)):
            cells.append(
                report.cell(
                    server,
                    case,
                    {"req_s": rps, "p50_ms": 1, "p99_ms": p99, "requests": 10, "seconds": 1, "error": None},
                )
            )
    cells.append(
        report.cell(
            report.MLSERVER, rf8, {"req_s": 300, "p50_ms": 1, "p99_ms": 5, "requests": 1, "seconds": 1, "error": None}
        )
    )
    cells.append(report.cell(kp, rf8, error="wrong labels"))
    rows = {(r["case"], r["c"]): r for r in report.ratios(cells, [kp])}
    assert rows[("LR 1 row", 1)]["verdict"] == "PASS" and rows[("LR 1 row", 1)]["ratio"] == pytest.approx(1.6)
    assert rows[("LR 1 row", 8)]["verdict"] == "FAIL"
    assert rows[("LR 100 rows", 8)]["verdict"] == "FAIL" and rows[("LR 100 rows", 8)]["ratio"] == pytest.approx(1.5)
    assert rows[("RF(100) 1 row", 1)]["verdict"] == "PASS"
    assert rows[("RF(100) 1 row", 8)]["verdict"] == "ERROR"
    scaling = rows[("LR 1 row", "8 vs 1")]
    assert scaling["verdict"] == "PASS" and scaling["ratio"] == pytest.approx(2200 / 1600)


def test_ratios_use_the_strongest_mlserver_row():
    """Kubepredict is held to the faster MLServer configuration and the lower of the two p99s."""
    lr1 = report.CASES[0]
    kp = "Kubepredict gateway"
    cells = [
        report.cell(
            report.MLSERVER,
            lr1,
            {"req_s": 100, "p50_ms": 9, "p99_ms": 40.0, "requests": 1, "seconds": 1, "error": None},
        ),
        report.cell(
            report.MLSERVER_BARE,
            lr1,
            {"req_s": 1200, "p50_ms": 1, "p99_ms": 1.9, "requests": 1, "seconds": 1, "error": None},
        ),
        report.cell(kp, lr1, {"req_s": 1900, "p50_ms": 1, "p99_ms": 1.8, "requests": 1, "seconds": 1, "error": None}),
    ]
    row = report.ratios(cells, [kp], cases=report.CASES[:2])[0]
    assert row["ratio"] == pytest.approx(1900 / 1200) and row["verdict"] == "PASS"
    cells[2]["p99_ms"] = 2.0  # above the bare row's p99, far below the pandas row's: still a FAIL
    assert report.ratios(cells, [kp], cases=report.CASES[:2])[0]["verdict"] == "FAIL"
    cells[1] = report.cell(report.MLSERVER_BARE, lr1, error="down")  # an erroring row is not the yardstick
    assert report.ratios(cells, [kp], cases=report.CASES[:2])[0]["ratio"] == pytest.approx(19.0)


def test_v2_tensor_body_is_one_row_major_2d_tensor():
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]})
    assert mlserver.v2_tensor_body(frame) == {
        "inputs": [{"name": "input-0", "datatype": "FP64", "shape": [2, 2], "data": [1.0, 3.0, 2.0, 4.0]}]
    }


def test_v2_body_is_one_input_per_column_in_pandas_form():
    frame = pd.DataFrame({"sepal_length": [5.1, 6.7], "count": [1, 2], "colour": ["red", "blue"]})
    body = mlserver.v2_body(frame)
    assert body["parameters"] == {"content_type": "pd"}
    by_name = {i["name"]: i for i in body["inputs"]}
    assert list(by_name) == list(frame.columns)
    assert by_name["sepal_length"] == {"name": "sepal_length", "datatype": "FP64", "shape": [2], "data": [5.1, 6.7]}
    assert by_name["count"]["datatype"] == "INT64" and by_name["count"]["data"] == [1, 2]
    assert by_name["colour"]["datatype"] == "BYTES" and by_name["colour"]["parameters"] == {"content_type": "str"}


def test_v2_labels_reads_the_predict_output():
    answer = {
        "model_name": "iris-lr",
        "outputs": [
            {"name": "predict_proba", "shape": [2, 3], "datatype": "FP64", "data": [[1, 0, 0], [0, 0, 1]]},
            {"name": "predict", "shape": [2, 1], "datatype": "BYTES", "data": ["setosa", "virginica"]},
        ],
    }
    assert mlserver.v2_labels(answer) == ["setosa", "virginica"]
    assert mlserver.v2_labels({"outputs": [{"name": "output-0", "data": [[0], [2]]}]}) == [0, 2]
    with pytest.raises(ValueError):
        mlserver.v2_labels({"outputs": []})


def test_mlserver_venv_pins_our_scikit_learn():
    pins = mlserver.requirements()
    ours = Path(__file__).resolve().parents[2].joinpath("requirements.txt").read_text()
    sklearn = re.search(r"^scikit-learn==(\S+)", ours, re.M).group(1)
    assert f"scikit-learn=={sklearn}" in pins
    assert "mlserver==1.7.1" in pins and "mlserver-sklearn==1.7.1" in pins and "uvloop<0.22" in pins
