"""A real headless browser for the report tests: Debian's chromium + chromedriver through selenium.

`.ci/run` installs them; on a machine without them the browser tests skip (and fail under CI=true)."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import pytest


def chromium() -> tuple[str, str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not (browser and driver):
        if os.environ.get("CI"):
            pytest.fail("chromium and chromedriver are missing; .ci/run installs them (apt-get install chromium chromium-driver)")
        pytest.skip("chromium/chromedriver not installed (apt-get install -y chromium chromium-driver)")
    return browser, driver


def load_page(path: Path, width: int = 1300, height: int = 2400) -> dict:
    """Open `path` in headless chromium: console errors, rendered plots, loaded images, a screenshot."""
    from PIL import Image
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver_path = chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        driver.set_page_load_timeout(60)
        driver.get(Path(path).resolve().as_uri())
        driver.execute_script("return document.readyState")
        plots = driver.execute_script("return document.querySelectorAll('.plotly-graph-div').length")
        rendered = driver.execute_script(
            "return [...document.querySelectorAll('.plotly-graph-div')].filter("
            "d => d.querySelector('.main-svg') && "
            "d.querySelectorAll('.scatterlayer .trace, .barlayer .trace, .heatmaplayer .hm').length > 0).length")
        images = driver.execute_script("return [...document.images].map(i => i.complete && i.naturalWidth > 0)")
        external = driver.execute_script(
            "return [...document.querySelectorAll('script[src],link[href],img[src]')].map(e => e.src || e.href)"
            ".filter(u => !u.startsWith('data:'))")
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        png = driver.get_screenshot_as_png()
    finally:
        driver.quit()
    shot = Image.open(io.BytesIO(png)).convert("L")
    return {"plots": plots, "rendered": rendered, "images": images, "external": external, "errors": errors,
            "screenshot": shot}
