"""``make run`` as a developer runs it: on another port the links it sends carry that port, and
Ctrl-C (SIGINT to the terminal's foreground process group) stops every process it started.

Runs in a temporary copy of the tracked tree with the project's .venv symlinked, on the embedded
default (SQLite, filesystem broker), with a clean environment, so nothing of the test settings
leaks in.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import requests

from tests.support.processes import free_port
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(
    shutil.which("make") is None or shutil.which("git") is None, reason="needs make and git"
)


def _tracked_tree_copy(target: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.split(b"\0")
    for name in filter(None, (f.decode() for f in files)):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)  # mtimes kept: make sees the venv as installed
    (target / ".venv").symlink_to((ROOT / ".venv").resolve())


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    # Zombies of the group count as gone: they hold no port and no file.
    states = subprocess.run(["ps", "-o", "stat=", "-g", str(pgid)], capture_output=True, text=True).stdout.split()
    return any(not state.startswith("Z") for state in states)


def _answers(url: str) -> bool:
    try:
        return requests.get(url + "/healthz", timeout=2).ok
    except requests.ConnectionError:
        return False


def _csrf(html: str) -> str:
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)


def test_make_run_links_carry_its_port_and_ctrl_c_stops_everything(tmp_path):
    tree = tmp_path / "kameng"
    tree.mkdir()
    _tracked_tree_copy(tree)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {name: os.environ[name] for name in ("PATH", "HOME", "LANG", "TMPDIR") if name in os.environ}
    log_path = tmp_path / "make-run.log"
    with open(log_path, "wb") as log:
        # -o: the shared venv is never reinstalled into from a test.
        make = subprocess.Popen(
            ["make", "-o", ".venv/.installed", "run", f"PORT={port}"],
            cwd=tree,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until(lambda: make.poll() is not None or _answers(url), timeout=180, message="make run to serve")
        wait_until(
            lambda: make.poll() is not None or "ready." in log_path.read_text(errors="replace"),
            timeout=60,
            message="the worker",
        )
        assert make.poll() is None, log_path.read_text(errors="replace")[-4000:]

        buyer = requests.Session()
        catalog = buyer.get(url + "/", timeout=10).text
        product_path = re.search(r'href="(/p/[^"/]+/)"', catalog).group(1)
        form = buyer.get(url + product_path, timeout=10).text
        pay_page = buyer.post(
            url + product_path,
            timeout=10,
            headers={"Referer": url + product_path},
            data={
                "csrfmiddlewaretoken": _csrf(form),
                "quantity": 1,
                "contact": "buyer@example.com",
                "query_password": "pw-1234",
            },
        )
        token = re.search(r"/order/([^/]+)/pay/", pay_page.url).group(1)
        sandbox = buyer.post(
            pay_page.url,
            data={"csrfmiddlewaretoken": _csrf(pay_page.text), "gateway": "sandbox"},
            headers={"Referer": pay_page.url},
            timeout=10,
        )
        assert "/payments/sandbox/pay/" in sandbox.url, sandbox.text[:2000]
        fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', sandbox.text))
        assert buyer.post(url + "/payments/sandbox/notify/", data=fields, timeout=10).text == "success"

        order_link = f"{url}/order/{token}/"
        wait_until(
            lambda: order_link in log_path.read_text(errors="replace"),
            timeout=60,
            message="the email with the order link",
        )
    finally:
        if make.poll() is None:
            os.killpg(make.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        try:
            wait_until(lambda: not _group_alive(make.pid), timeout=30, message="every process of make run to stop")
        finally:
            if _group_alive(make.pid):
                os.killpg(make.pid, signal.SIGKILL)
            make.wait(timeout=10)

    output = log_path.read_text(errors="replace")
    assert "Segmentation fault" not in output
    assert output.count("Warm shutdown") <= 2, output[-3000:]
    assert "127.0.0.1:8000" not in output
