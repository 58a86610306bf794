"""``make screenshot``: the README's dashboard image, from what ``make demo`` serves.

Runs ``pycemaker demo`` in a temporary folder on free ports (its own embedded database, simulated
history, the scheduler's first training run), waits until that run has judged every kind and the
API serves its winner, then opens the dashboard in Debian's chromium (headless, through playwright)
and writes ``docs/img/dashboard.png``. Stops the demo (as Ctrl-C does) at the end.

    PYTHONPATH=. .venv/bin/python scripts/screenshot.py [--out docs/img/dashboard.png] [--timeout 900]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get_json(url: str) -> dict | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.loads(response.read())
    except (OSError, ValueError):
        return None


def first_run_judged(base: str) -> dict | None:
    """The status once the first training run has judged every kind (its LSTM among the candidates or skipped)."""
    runs = (get_json(base + "/api/v1/models") or {}).get("runs") or []
    status = get_json(base + "/api/v1/status")
    if not runs or not status or not status.get("predicted_current"):
        return None
    kinds = {c["kind"] for c in runs[0].get("candidates", [])} | {f["kind"] for f in runs[0].get("failed", [])}
    return status if "lstm" in kinds and status["model"]["version"] else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "img" / "dashboard.png")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for the first run (default 900)")
    args = parser.parse_args(argv)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.stderr.write("chromium is not installed: `sudo make system-deps`\n")
        return 2
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="pycemaker-screenshot-") as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYCEMAKER_") and k != "MONGO_URI"}
        env.update(PYCEMAKER_PORT=str(port), PYCEMAKER_EMBEDDED_PORT=str(free_port()), PYCEMAKER_DATA_DIR=f"{tmp}/db",
                   PYCEMAKER_MODELS_DIR=f"{tmp}/models", PYTHONPATH=str(REPO))
        demo = subprocess.Popen([sys.executable, "-m", "pycemaker", "demo"], cwd=tmp, env=env, start_new_session=True)
        try:
            deadline = time.monotonic() + args.timeout
            status = None
            while status is None:
                if demo.poll() is not None or time.monotonic() > deadline:
                    sys.stderr.write("the demo's first training run did not finish in time\n")
                    return 1
                time.sleep(5)
                status = first_run_judged(base)
            time.sleep(12)  # two dashboard refreshes' worth of live data on the new model
            from playwright.sync_api import sync_playwright

            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
                page = browser.new_context(viewport={"width": 1280, "height": 900}, timezone_id="UTC",
                                           locale="en-GB").new_page()
                page.goto(base + "/")
                kind = page.locator("#model-kind")
                for _ in range(60):  # the page's policy forbids evaluated scripts: poll from here
                    if kind.inner_text() not in ("", "–"):
                        break
                    page.wait_for_timeout(500)
                page.wait_for_timeout(2000)
                args.out.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(args.out), full_page=True)
                browser.close()
            status = get_json(base + "/api/v1/status") or status  # what the page showed, the run's winner by now
            sys.stdout.write(f"wrote {args.out}: model {status['model']['version']} ({status['model']['kind']}), "
                             f"state {status['state']}\n")
            return 0
        finally:
            demo.send_signal(signal.SIGINT)
            try:
                demo.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(demo.pid, signal.SIGKILL)


if __name__ == "__main__":
    sys.exit(main())
