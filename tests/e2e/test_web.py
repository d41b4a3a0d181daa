"""The web page, driven by clicks in Debian's Chromium through Playwright (SERVICES.md §6).

The gateway comes from the ``gateway_url`` fixture (tests/conftest.py: a real ``kubepredict serve``
on a free port with a temporary data folder). Set ``KUBEPREDICT_WEB_TEST_URL`` to run these tests
against a gateway that is already running instead.

Screenshots of every step go to test-artifacts/web/; one full-page shot is copied to docs/web.png.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import shutil
import time
from datetime import date, timedelta
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "web"
CHROMIUM = Path(os.environ.get("KUBEPREDICT_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
]
JOB_TIMEOUT_MS = 120_000
PAGE_SIZE = 25  # rows per result page in web/app.js

pytestmark = pytest.mark.timeout(300)


def _unavailable(reason: str):
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (a missing service is a failure under CI=true)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install playwright==1.65.2)")
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} not found (apt-get install -y chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def web_url(gateway_url) -> str:
    """The page of the session's real gateway (KUBEPREDICT_WEB_TEST_URL points the walk elsewhere)."""
    return (os.environ.get("KUBEPREDICT_WEB_TEST_URL") or gateway_url).rstrip("/")


class Walk:
    """One browser page plus what the walk records: console errors, screenshots, step timings."""

    def __init__(self, page, name: str):
        self.page, self.name = page, name
        self.console_errors: list[str] = []
        self.page_errors: list[str] = []
        self.timings: dict[str, float] = {}
        self.shots: list[Path] = []
        self._n = 0
        self._t = time.monotonic()
        page.on("console", lambda m: m.type == "error" and self.console_errors.append(m.text))
        page.on("pageerror", lambda e: self.page_errors.append(str(e)))

    def step(self, label: str, full_page: bool = True) -> Path:
        now = time.monotonic()
        self.timings[label] = round(now - self._t, 2)
        self._t = now
        self._n += 1
        path = ARTIFACTS / f"{self.name}-{self._n:02d}-{label}.png"
        if full_page:  # from the top, so the sticky jobs panel sits where a reader expects it
            self.page.evaluate("window.scrollTo(0, 0)")
        self.page.screenshot(path=str(path), full_page=full_page)
        self.shots.append(path)
        return path

    def save_timings(self) -> None:
        (ARTIFACTS / f"{self.name}-timings.json").write_text(json.dumps(self.timings, indent=2))


@pytest.fixture
def walk(browser, request):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(20_000)
    w = Walk(page, request.node.name.removeprefix("test_"))
    try:
        yield w
    finally:
        w.save_timings()
        context.close()


def iris_like_csv(path: Path, rows: int = 150, with_label: bool = True, seed: int = 0) -> Path:
    """A small three-class data set shaped like iris: four numeric features, a string label."""
    rng = random.Random(seed)
    centres = {"setosa": (5.0, 3.4, 1.5, 0.2), "versicolor": (5.9, 2.8, 4.3, 1.3), "virginica": (6.6, 3.0, 5.6, 2.0)}
    names = list(centres)
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["sepal_length", "sepal_width", "petal_length", "petal_width"] + (["species"] if with_label else []))
    for i in range(rows):
        label = names[i % 3]
        values = [round(c + rng.gauss(0, 0.25), 1) for c in centres[label]]
        w.writerow(values + ([label] if with_label else []))
    path.write_text(out.getvalue())
    return path


def _upload(page, csv_path: Path, name: str) -> None:
    page.set_input_files("#upload-file", str(csv_path))
    page.fill("#upload-name", name)
    page.click("#upload-button")
    page.locator("#dataset-list tr", has_text=name).first.wait_for()
    page.locator("#upload-progress-text", has_text="Uploaded").wait_for()


def _job_ids(page) -> set[str]:
    return set(page.eval_on_selector_all("#job-list li[data-job-id]", "els => els.map(e => e.dataset.jobId)"))


def _click_and_get_new_job(page, button: str) -> str:
    before = _job_ids(page)
    page.click(button)
    page.wait_for_function(
        "before => [...document.querySelectorAll('#job-list li[data-job-id]')]"
        ".some(e => !before.includes(e.dataset.jobId))",
        arg=list(before),
    )
    (new,) = _job_ids(page) - before
    return new


def _wait_job(page, job_id: str, samples: list | None = None) -> None:
    """Waits until the job's row in #job-list says succeeded, sampling its progress bar meanwhile."""
    item = page.locator(f"#job-list li[data-job-id='{job_id}']")
    deadline = time.monotonic() + JOB_TIMEOUT_MS / 1000
    while time.monotonic() < deadline:
        status = item.get_attribute("data-status")
        if samples is not None:
            samples.append((status, float(item.locator("progress").get_attribute("value") or 0)))
        if status == "succeeded":
            return
        if status in ("failed", "cancelled"):
            pytest.fail(
                f"job {job_id} ended {status}: {item.inner_text()} / banner: {page.inner_text('#error-banner')}"
            )
        page.wait_for_timeout(200)
    pytest.fail(f"job {job_id} did not finish in {JOB_TIMEOUT_MS / 1000:.0f} s: {item.inner_text()}")


def _train(page, algorithm: str, name: str) -> str:
    page.locator(f"#train-algorithm option[value='{algorithm}']").wait_for(state="attached")
    page.select_option("#train-algorithm", algorithm)
    page.fill("#train-name", name)
    return _click_and_get_new_job(page, "#train-button")


def _assert_model_card(page, model_id: str) -> None:
    """The registry table has one compact row per version; its full card (metrics, charts) once opened."""
    row = page.locator(f"#model-list tr[data-model-id='{model_id}']")
    row.locator(".badge.ready").wait_for()
    if row.locator("button.open-model").get_attribute("aria-expanded") != "true":
        row.locator("button.open-model").click()
    card = page.locator(f"#model-detail article[data-model-id='{model_id}']")
    card.locator(".badge.ready").wait_for()
    assert page.locator("#model-detail article").count() == 1  # only the opened version has a full card
    assert card.locator(".metric", has_text="accuracy").count() == 1, card.inner_text()
    assert card.locator("svg").count() >= 1, "no chart in the model card"
    assert card.locator("figcaption", has_text="Confusion matrix").count() == 1


def test_full_loop_by_clicks(walk, web_url, tmp_path):
    page = walk.page
    train_csv = iris_like_csv(tmp_path / "iris.csv")
    score_csv = iris_like_csv(tmp_path / "new-flowers.csv", rows=60, with_label=False, seed=1)
    binary = tmp_path / "photo.bin"
    binary.write_bytes(bytes(range(256)) * 64)

    page.goto(web_url + "/ui/")
    page.locator("#train-algorithm option").first.wait_for(state="attached")
    walk.step("opened")

    # 1. upload, then look at the dataset's preview and column stats
    _upload(page, train_csv, "iris")
    page.locator("#dataset-list button", has_text="iris").first.click()
    page.locator("#dataset-columns td", has_text="species").wait_for()
    assert page.locator("#dataset-preview tbody tr").count() == 20
    walk.step("uploaded")

    # 2. train a random forest and watch the job
    page.locator("#train-target option[value='species']").wait_for(state="attached")
    assert page.input_value("#train-target") == "species"
    samples: list = []
    job_id = _train(page, "random_forest", "iris-rf")
    walk.step("training", full_page=False)
    _wait_job(page, job_id, samples)
    assert samples[-1] == ("succeeded", 1.0)
    assert page.get_attribute("#job-status", "data-status") == "succeeded"
    assert page.eval_on_selector("#job-progress", "e => e.value") == 1
    model_id = page.get_attribute(f"#job-list li[data-job-id='{job_id}']", "data-model-id")

    # 3. the model card shows metrics and charts; point the champion alias at it from the card
    _assert_model_card(page, model_id)
    page.fill("#alias-name", "champion")
    page.click("#alias-set")
    page.locator(f"#model-list tr[data-model-id='{model_id}'] .alias-chip[data-alias='champion']").wait_for()
    walk.step("trained")

    # 4. upload new data right in the predict form, then predict
    page.select_option("#predict-model", model_id)
    page.set_input_files("#predict-file", str(score_csv))
    page.locator("#predict-upload-text", has_text="Uploaded").wait_for()
    page.wait_for_function(
        "() => document.querySelector('#predict-dataset').selectedOptions[0].textContent.startsWith('new-flowers')"
    )
    predict_job = _click_and_get_new_job(page, "#predict-button")
    _wait_job(page, predict_job)
    page.locator("#result-page", has_text="of 60").wait_for()
    assert page.locator("#result-table tbody tr").count() == PAGE_SIZE
    assert page.locator("#results-chart svg").count() == 1
    # the drift report: one bar per feature, worst PSI first, the worst one's histograms shown; a click
    # on another feature shows its reference vs current histogram
    bars = page.locator("#drift-report .drift-row")
    bars.first.wait_for()
    assert bars.count() == 4
    psis = [float(t) for t in page.locator("#drift-report .drift-psi").all_inner_texts()]
    assert psis == sorted(psis, reverse=True), psis
    assert bars.first.get_attribute("aria-pressed") == "true"
    second = bars.nth(1).get_attribute("data-feature")
    bars.nth(1).click()
    page.locator(f"#drift-detail svg[aria-label='reference and current distribution of {second}']").wait_for()
    reference, current = page.locator("#drift-detail rect.drift-ref"), page.locator("#drift-detail rect.drift-cur")
    assert reference.count() == current.count() > 1
    page.locator("#models").evaluate("e => e.scrollIntoView()")  # the registry, the opened card, the predict form
    walk.step("predicted", full_page=False)  # one screen: the README's docs/web.png

    # 5. page through the results
    page.click("#result-next")
    page.locator("#result-page", has_text=f"rows {PAGE_SIZE + 1}–{2 * PAGE_SIZE} of 60").wait_for()
    assert page.locator("#result-table tbody tr").first.locator("td").first.inner_text() == str(PAGE_SIZE)
    page.click("#result-next")
    page.locator("#result-page", has_text=f"rows {2 * PAGE_SIZE + 1}–60 of 60").wait_for()
    assert page.is_disabled("#result-next")
    page.click("#result-prev")
    page.locator("#result-page", has_text=f"rows {PAGE_SIZE + 1}–{2 * PAGE_SIZE} of 60").wait_for()

    # 6. download the CSV and count its rows
    with page.expect_download() as info:
        page.click("#result-download")
    with open(info.value.path(), newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 60
    assert any("predict" in c.lower() for c in rows[0]), list(rows[0])

    # 7. try one row online
    page.click("#online summary")
    page.locator("#online-fields input").first.wait_for()
    page.click("#online-button")
    page.locator("#online-output", has_text="Prediction:").wait_for()
    # explain the row: one bar per column, and the base value adding up to the output
    page.click("#online-explain")
    page.locator("#online-explanation svg").wait_for()
    assert page.locator("#online-explanation rect.bar").count() == 4
    assert "base" in page.locator("#online-explanation p").inner_text()
    walk.step("online")

    assert walk.page_errors == [], walk.page_errors
    assert walk.console_errors == [], walk.console_errors

    # 8. an error the page must explain in words: a binary file is not a CSV
    page.set_input_files("#upload-file", str(binary))
    page.fill("#upload-name", "not-a-csv")
    page.click("#upload-button")
    banner = page.locator("#error-banner")
    banner.wait_for(state="visible")
    text = banner.inner_text()
    assert "Could not upload" in text and "photo.bin" in text, text
    assert "Traceback" not in text and "<html" not in text.lower()
    assert len(text) > len("Could not upload “photo.bin”: ") + 5, text
    walk.step("error")
    page.click("#error-dismiss")
    banner.wait_for(state="hidden")

    # the deliberate 400 is the only thing Chromium may log (as "Failed to load resource")
    assert walk.page_errors == [], walk.page_errors
    assert all("Failed to load resource" in e and "400" in e for e in walk.console_errors), walk.console_errors

    # 9. the phone-width layout, for the record
    page.set_viewport_size({"width": 375, "height": 800})
    page.wait_for_timeout(200)
    assert page.evaluate("document.documentElement.scrollWidth") <= 375 + 1, "page scrolls sideways at 375 px"
    walk.step("phone")
    page.set_viewport_size({"width": 1280, "height": 900})
    (ROOT / "docs").mkdir(exist_ok=True)
    shutil.copyfile(next(p for p in walk.shots if p.name.endswith("-predicted.png")), ROOT / "docs" / "web.png")


def test_two_trainings_at_once(walk, web_url, tmp_path):
    page = walk.page
    page.goto(web_url + "/ui/")
    page.locator("#train-algorithm option").first.wait_for(state="attached")
    _upload(page, iris_like_csv(tmp_path / "iris2.csv", seed=2), "iris-twice")
    page.locator("#train-target option[value='species']").wait_for(state="attached")

    first = _train(page, "random_forest", "twin-a")
    second = _train(page, "logistic_regression", "twin-b")
    assert first != second
    items = {j: page.locator(f"#job-list li[data-job-id='{j}']") for j in (first, second)}
    for item in items.values():
        assert item.locator("progress").count() == 1
    walk.step("both-running", full_page=False)

    samples: dict[str, list] = {first: [], second: []}
    for job in (first, second):
        _wait_job(page, job, samples[job])
    for item in items.values():
        assert item.get_attribute("data-status") == "succeeded"
        assert float(item.locator("progress").get_attribute("value")) == 1.0
        assert "100%" in item.inner_text()
    models = {item.get_attribute("data-model-id") for item in items.values()}
    assert len(models) == 2
    for model_id in models:
        _assert_model_card(page, model_id)
    walk.step("both-done")
    # compare the two versions' metrics side by side
    for model_id in models:
        page.locator(f"#model-list tr[data-model-id='{model_id}'] input.compare-pick").check()
    accuracy = page.locator("#model-compare tr[data-metric='accuracy'] td")
    accuracy.first.wait_for()
    cells = accuracy.all_inner_texts()
    assert len(cells) == 3 and all(t.strip() != "—" for t in cells), cells
    walk.step("compare", full_page=False)
    assert walk.page_errors == [], walk.page_errors
    assert walk.console_errors == [], walk.console_errors


def test_inferred_task_is_the_servers(walk, web_url, tmp_path):
    """Integer class labels stored as floats (0.0, 1.0, 2.0): the server trains a classifier, and the page
    says so too (it asks GET /function/train/task; its old guess from the dtype said regression)."""
    import httpx

    page = walk.page
    path = tmp_path / "float-labels.csv"
    rows = [f"{i % 7},{(i * 13) % 11},{i * 0.37 + 0.01:.2f},{float(i % 3)}" for i in range(60)]
    path.write_text("\n".join(["x1,x2,measure,label", *rows]) + "\n")
    page.goto(web_url + "/ui/")
    page.locator("#train-algorithm option").first.wait_for(state="attached")
    _upload(page, path, "float-labels")
    dataset_id = page.input_value("#train-dataset")
    assert page.input_value("#train-target") == "label"
    hint = page.locator("#train-task-inferred")
    answers = {}
    for target in ("label", "measure"):
        page.select_option("#train-target", target)
        query = {"dataset_id": dataset_id, "target": target}
        answers[target] = httpx.get(f"{web_url}/function/train/task", params=query).json()["task"]
        hint.filter(has_text=f"(inferred: {answers[target]})").wait_for()
        only = "logistic_regression" if answers[target] == "classification" else "linear_regression"
        page.locator(f"#train-algorithm option[value='{only}']").wait_for(state="attached")
    assert answers == {"label": "classification", "measure": "regression"}
    page.select_option("#train-target", "")
    hint.filter(has_text="(inferred: clustering)").wait_for()
    walk.step("inferred-task")
    assert walk.page_errors == [], walk.page_errors
    assert walk.console_errors == [], walk.console_errors


def test_registry_shows_the_promotion_and_moves_an_alias(walk, web_url, tmp_path):
    """Two versions of one name trained with a champion gate (API): the page groups them, shows where the
    alias points and the gate's decision, and moving the alias from the card moves the chip."""
    from tests.e2e.api import Api

    api = Api(web_url)
    ds = api.upload(iris_like_csv(tmp_path / "gate.csv", seed=5).read_text(), "gate-data")["dataset_id"]
    gate = {"alias": "champion", "metric": "accuracy", "min_gain": 0.01, "dataset_id": ds}
    name = f"gated-{random.randrange(10**6)}"
    ids = []
    for algorithm, params in (("random_forest", {"n_estimators": 20}), ("decision_tree", {"max_depth": 1})):
        queued = api.train(dataset_id=ds, target="species", algorithm=algorithm, params=params, name=name, promote=gate)
        assert api.wait(queued["job_id"])["status"] == "succeeded"
        ids.append(queued["model_id"])
    v1, v2 = ids
    page = walk.page
    page.goto(web_url + "/ui/")
    page.locator(f"#model-list tr.group-row[data-name='{name}']", has_text="2 versions").wait_for()
    page.locator(f"#model-list tr[data-model-id='{v1}'] .alias-chip[data-alias='champion']").wait_for()
    page.locator(f"#model-list tr[data-model-id='{v2}'] button.open-model").click()
    note = page.locator("#model-detail .promotion")
    note.wait_for()
    assert "not promoted" in note.inner_text() and "v1" in note.inner_text(), note.inner_text()
    page.fill("#alias-name", "champion")
    page.click("#alias-set")  # promote the challenger by hand…
    page.locator(f"#model-list tr[data-model-id='{v2}'] .alias-chip[data-alias='champion']").wait_for()
    assert page.locator(f"#model-list tr[data-model-id='{v1}'] .alias-chip").count() == 0
    walk.step("registry", full_page=False)
    page.click("#model-detail button.alias-remove[data-alias='champion']")  # …then remove the alias
    page.wait_for_function("id => !document.querySelector(`#model-list tr[data-model-id='${id}'] .alias-chip`)", arg=v2)
    assert walk.page_errors == [], walk.page_errors
    assert walk.console_errors == [], walk.console_errors


def _select_dataset(page, select: str, name: str) -> None:
    page.wait_for_function(
        "([sel, name]) => [...document.querySelector(sel).options].some(o => o.textContent.startsWith(name))",
        arg=[select, name],
    )
    value = page.eval_on_selector(
        select, "(s, name) => [...s.options].find(o => o.textContent.startsWith(name)).value", name
    )
    page.select_option(select, value)


def test_forecasting_by_clicks(walk, web_url, tmp_path):
    """Train a forecaster by clicks, read its backtest and chart (switching series), predict, download."""
    import math

    page = walk.page
    path = tmp_path / "store-sales.csv"
    # a regular daily calendar: 84 days from 2024-01-01
    lines = ["day,store,sales"] + [
        f"{(date.fromisoformat('2024-01-01') + timedelta(days=d)).isoformat()},{s},"
        f"{100 + 20 * (s == 'south') + d * 0.3 + 8 * math.sin(2 * math.pi * d / 7) + ((d * 7919) % 13 - 6) / 6:.2f}"
        for s in ("north", "south")
        for d in range(84)
    ]
    path.write_text("\n".join(lines) + "\n")

    page.goto(web_url + "/ui/")
    page.locator("#train-algorithm option").first.wait_for(state="attached")
    _upload(page, path, "store-sales")
    _select_dataset(page, "#train-dataset", "store-sales")
    page.locator("#train-target option[value='sales']").wait_for(state="attached")
    page.select_option("#train-target", "sales")
    page.select_option("#train-task", "forecasting")
    page.locator("#train-forecast").wait_for(state="visible")
    page.locator("#train-time-column option[value='day']").wait_for(state="attached")
    page.select_option("#train-time-column", "day")
    page.select_option("#train-series-columns", ["store"])
    page.fill("#train-horizon", "7")
    page.locator("#train-algorithm option[value='seasonal_naive']").wait_for(state="attached")
    job_id = _train(page, "ridge", "store-forecast")
    _wait_job(page, job_id)
    model_id = page.get_attribute(f"#job-list li[data-job-id='{job_id}']", "data-model-id")

    listed = page.locator(f"#model-list tr[data-model-id='{model_id}']")
    listed.locator(".badge.ready").wait_for()
    assert listed.locator("td.num").inner_text().startswith("MASE ")  # the registry's main metric
    listed.locator("button.open-model").click()
    card = page.locator("#model-detail")
    card.locator(".fc-metrics td", has_text="seasonal naive").wait_for()
    assert "coverage" in card.locator(".fc-coverage").inner_text()
    plot = card.locator(".fc-plot[data-points='7']")
    plot.wait_for()
    assert plot.get_attribute("data-series") == "north"
    assert card.locator(".fc-plot polygon.fc-band").count() == 1
    assert card.locator(".fc-plot polyline.fc-history").count() == 1
    card.locator("select.fc-series").select_option(label="south")
    card.locator(".fc-plot[data-series='south']").wait_for()
    card.scroll_into_view_if_needed()
    card.screenshot(path=str(ROOT / "docs" / "forecast.png"))
    walk.step("forecast-trained")

    page.select_option("#predict-model", model_id)
    _select_dataset(page, "#predict-dataset", "store-sales")
    predict_job = _click_and_get_new_job(page, "#predict-button")
    _wait_job(page, predict_job)
    page.locator("#result-page", has_text="of 14").wait_for()
    headers = page.locator("#result-table thead th").all_inner_texts()
    assert headers == ["row", "timestamp", "store", "prediction", "lower", "upper"], headers
    assert page.locator("#result-table tbody tr").first.locator("td").nth(1).inner_text() == "2024-03-25"
    walk.step("forecast-predicted")
    with page.expect_download() as info:
        page.click("#result-download")
    with open(info.value.path(), newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 14 and list(rows[0]) == ["timestamp", "store", "prediction", "lower", "upper"]
    assert {r["store"] for r in rows} == {"north", "south"}
    page.click("#online summary")
    page.click("#online-button")
    page.locator("#online-output", has_text="Forecast: 14 rows, 7 steps per series; first 2024-03-25").wait_for()
    assert walk.page_errors == [], walk.page_errors
