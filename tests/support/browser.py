"""Headless Chromium for end-to-end tests: Debian's ``chromium`` and ``chromium-driver`` driven by
Selenium against the real server processes (gunicorn + a Celery worker, ``tests.support.processes``).

``make test`` runs these when the browser is installed; with KAMENG_REQUIRE_SERVICES=1 a missing
browser fails the test instead of skipping it (``.ci/run`` installs it).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

CHROMIUM = os.environ.get("KAMENG_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("KAMENG_CHROMEDRIVER", "/usr/bin/chromedriver")
SCREENSHOT_DIR = Path(
    os.environ.get("KAMENG_SCREENSHOT_DIR", Path(__file__).parent.parent.parent / "var" / "screenshots")
)


@dataclass(frozen=True)
class Viewport:
    name: str
    width: int
    height: int
    mobile: bool


PHONE = Viewport("phone", 390, 844, True)
DESKTOP = Viewport("desktop", 1366, 900, False)
VIEWPORTS = {v.name: v for v in (PHONE, DESKTOP)}

# A phone's user agent: the shop picks app hand-off (wap pay, H5) over QR codes by it.
PHONE_UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Mobile/15E148 Safari/604.1"
)


def browser_missing() -> str | None:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            return f"needs {path} (apt-get install chromium chromium-driver)"
    return None


def chromium_start(viewport: Viewport, *, language: str = "zh-CN", flags: tuple[str, ...] = ()):
    """A new headless Chromium with an empty profile, at ``viewport`` and asking for ``language``
    (Accept-Language), with extra command-line ``flags`` (e.g. ``--host-resolver-rules`` to send
    a platform's host name to a loopback stand-in). The caller quits it; ``driver.profile_dir``
    is removed by ``chromium_quit``."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="kameng-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # The flags this machine needs: no sandbox as root, and no background traffic to the closed
    # network (each refused connection slows start-up).
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--disable-default-apps",
        f"--user-data-dir={profile}",
        f"--window-size={viewport.width},{viewport.height}",
        f"--lang={language}",
        *flags,
    ):
        options.add_argument(flag)
    options.add_experimental_option("prefs", {"intl.accept_languages": language})
    if viewport.mobile:
        options.add_argument(f"--user-agent={PHONE_UA}")
    # Console errors (CSP violations among them) are read back by tests.
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.profile_dir = profile
    driver.viewport = viewport
    driver.set_window_size(viewport.width, viewport.height)
    driver.set_page_load_timeout(30)
    return driver


def chromium_quit(driver) -> None:
    try:
        driver.quit()
    finally:
        shutil.rmtree(getattr(driver, "profile_dir", ""), ignore_errors=True)


def screenshot(driver, name: str) -> Path:
    """Save a full-height PNG under var/screenshots/ (kept for people to look at)."""
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOT_DIR / f"{name}-{driver.viewport.name}.png"
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(driver.viewport.width, max(driver.viewport.height, min(int(height), 6000)))
    driver.save_screenshot(str(path))
    driver.set_window_size(driver.viewport.width, driver.viewport.height)
    return path


def console_errors(driver) -> list[str]:
    """The page's console errors since the last call (CSP violations, failed requests, JS errors)."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
