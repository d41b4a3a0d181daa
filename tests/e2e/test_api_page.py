"""The API reference page (/ui/api.html) renders every operation of /openapi.json in a real browser, offline."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from tests.gateway_process import GatewayProcess

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]
CHROMIUM = Path(os.environ.get("KUBEPREDICT_CHROMIUM", "/usr/bin/chromium"))


def _unavailable(reason: str):
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (a missing service is a failure under CI=true)")
    pytest.skip(reason)


def test_api_page_lists_every_operation_without_external_requests(tmp_path):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed")
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} not found")
    with GatewayProcess(tmp_path / "gw") as gw:
        doc = httpx.get(gw.url + "/openapi.json").json()
        op_ids = [op["operationId"] for ops in doc["paths"].values() for op in ops.values()]
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=str(CHROMIUM),
                headless=True,
                args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
            )
            try:
                page = browser.new_page()
                errors, foreign = [], []
                page.on("console", lambda m: m.type == "error" and errors.append(m.text))
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.on("request", lambda r: r.url.startswith(gw.url) or foreign.append(r.url))
                page.goto(gw.url + "/ui/api.html")
                page.wait_for_selector("#op-train_create")
                shown = page.eval_on_selector_all("section.op", "els => els.map(e => e.id.slice(3))")
                assert sorted(shown) == sorted(op_ids)
                assert page.locator("#schema-TrainRequest").count() == 1
                body = page.locator("#op-train_create").inner_text()
                assert "POST" in body and "/function/train" in body and "422" in body
                assert errors == [] and foreign == []
            finally:
                browser.close()
