"""The leaderboard in a real browser: Debian's headless Chromium driven by Selenium.

The site is opened from file://, as a user opens the one `instract-eval run` writes. CI installs
the browser (`.ci/run`) and sets INSTRACT_EVAL_REQUIRE_BROWSER=1, so there a missing browser fails
instead of skipping. INSTRACT_EVAL_SCREENSHOTS=DIR keeps the screenshot for a person to look at.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import pytest

from instract_eval.leaderboard import build_site

from .conftest import HOSTILE

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def _missing() -> str | None:
    if importlib.util.find_spec("selenium") is None:
        return "selenium is not installed"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not path.exists():
            return f"{path} is missing (apt-get install chromium chromium-driver)"
    return None


@pytest.fixture(scope="module")
def browser():
    missing = _missing()
    if missing:
        if os.environ.get("INSTRACT_EVAL_REQUIRE_BROWSER"):
            pytest.fail(f"browser test required but {missing}")
        pytest.skip(missing)
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must not look for drivers online
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,1600"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def site(results, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("browser") / "site"
    build_site([results["runs"], results["hostile"], results["paper"]], out)
    return out


def _table_state(driver, table_id: str) -> list[tuple[str, str]]:
    """(row label, value of the second column) for every body row, in the order shown."""
    return driver.execute_script(
        "return Array.from(document.getElementById(arguments[0]).tBodies[0].rows)"
        ".map(r => [r.cells[0].textContent.trim(), r.cells[1].getAttribute('data-value')]);", table_id)


def _values(state):
    return [float(value) for _, value in state if value]


def test_clicking_a_header_sorts_best_first_then_reverses(browser, site, tmp_path):
    from selenium.webdriver.common.by import By

    browser.get((site / "index.html").as_uri())
    before = _table_state(browser, "table-synth")
    button = browser.find_element(By.CSS_SELECTOR, '#table-synth thead button[data-column="1"]')
    header = button.find_element(By.XPATH, "..")
    direction = header.get_attribute("data-direction")
    assert direction in ("higher", "lower")
    button.click()
    first = _table_state(browser, "table-synth")
    button.click()
    second = _table_state(browser, "table-synth")
    best_first = sorted(_values(before), reverse=direction == "higher")
    assert _values(first) == best_first and _values(second) == best_first[::-1]
    assert sorted(first) == sorted(before)  # same rows, only reordered
    assert first != before or second != before
    assert header.get_attribute("aria-sort") == ("ascending" if direction == "higher" else "descending")
    screenshots = Path(os.environ.get("INSTRACT_EVAL_SCREENSHOTS") or tmp_path)
    screenshots.mkdir(parents=True, exist_ok=True)
    shot = screenshots / "leaderboard-index.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000


def test_the_keyboard_sorts_too(browser, site):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser.get((site / "index.html").as_uri())
    button = browser.find_element(By.CSS_SELECTOR, '#table-synth thead button[data-column="0"]')
    button.send_keys(Keys.ENTER)
    labels = [label for label, _ in _table_state(browser, "table-synth")]
    assert labels == sorted(labels, key=str.lower)
    assert browser.find_element(By.ID, "table-synth-status").text.startswith("Sorted by model")


def test_no_script_from_a_hostile_result_runs_and_its_name_reads_as_text(browser, site):
    from selenium.webdriver.common.by import By

    pages = [site / "index.html", *site.glob("synth-aa-*.html")]  # the hostile task's page has a safe name
    assert len(pages) == 2
    for page in pages:
        browser.get(page.as_uri())
        assert browser.execute_script("return typeof window.__pwned") == "undefined", page.name
        assert HOSTILE in browser.find_element(By.TAG_NAME, "body").text, page.name
    assert [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"] == []


def test_pages_work_when_the_site_is_moved(browser, site, tmp_path):
    """Links are relative and nothing is fetched: a copy elsewhere behaves the same."""
    from selenium.webdriver.common.by import By

    moved = tmp_path / "elsewhere"
    shutil.copytree(site, moved)
    browser.get((moved / "index.html").as_uri())
    browser.find_element(By.LINK_TEXT, "instract-semantic").click()
    assert browser.current_url == (moved / "instract-semantic.html").as_uri()
    assert browser.find_elements(By.CSS_SELECTOR, "svg.plot")
    assert "reported" in browser.find_element(By.ID, "metrics").text
