"""First start from a clean runs folder: seconds until the app is interactive, and until every sample is prepared.

    python bench/first_start.py [--keep DIR] [--first-only]

Starts ``streamlit run app.py`` headless on a fresh temporary runs folder and opens it in Debian's chromium
(Playwright), as a first-time user would. ``first_interactive_s`` is from starting the server to Start here (the
root page) on code_lstm with the sidebar navigation and its first lesson card drawn; ``start_here_complete_s``
until its last card is filled (no spinner left); ``all_prepared_s`` is until the background
preparer has written ``"finished": true`` (every sample recorded, its projections and gradient curves stored).
Then, in this process, the Gradients page's RNN vs LSTM overlay (code_lstm and code_rnn at the page's default
K and targets) read from the stored curves against computed cold, side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def shown_run(page) -> str:
    """The run picker's value (its combobox input), and the URL, which names the run once the page published it."""
    boxes = page.locator('[data-testid="stSelectbox"] input')
    return " ".join([page.url, *(boxes.nth(i).input_value() for i in range(boxes.count()))])


def browse(base: str, t0: float) -> tuple[float, float]:
    """Seconds from ``t0`` until Start here (the root page) of code_lstm is usable in a real browser: the
    navigation and its first lesson card drawn; and until every card is filled (no spinner left)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1400, "height": 1200})
        while True:
            try:
                page.goto(base, wait_until="domcontentloaded", timeout=5_000)
                break
            except Exception:  # the server is not listening yet
                time.sleep(0.1)
        nav = page.locator('[data-testid="stSidebarNavLink"]')
        usable = None
        while True:
            ready = nav.count() and page.locator("h1", has_text="Start here").count()
            cards = page.locator('[data-testid="stPageLink"]').count()
            if usable is None and ready and cards and "code_lstm" in shown_run(page):
                usable = time.monotonic() - t0
            if usable is not None and not page.locator('[data-testid="stSpinner"]').count():
                complete = time.monotonic() - t0
                break
            if time.monotonic() - t0 > 300:
                raise SystemExit("the app did not become interactive within 300 s")
            page.wait_for_timeout(100)
        browser.close()
    return usable, complete


def overlay_seconds(root: Path) -> tuple[float, float]:
    """(stored, cold) seconds for the RNN vs LSTM overlay's two curves at the Gradients page's defaults."""
    sys.path.insert(0, str(REPO))
    import lstmviz
    from lstmviz.analysis import gradient_cache, gradients
    from lstmviz.models import samples

    K, n = gradient_cache.DEFAULT_K, gradient_cache.DEFAULT_TARGETS
    stored = cold = 0.0
    for name in ("code_lstm", "code_rnn"):
        run = lstmviz.open_run(root / name)
        ckpt = samples.SAMPLES_DIR / f"{name}.pt"
        t = time.perf_counter()
        assert gradient_cache.stored(run, ckpt, K, n) is not None
        stored += time.perf_counter() - t
        t = time.perf_counter()
        module = lstmviz.load_model(ckpt).module
        ids = run.tokens["token_id"].to_numpy()[: gradient_cache.TOKENS].copy()
        gradients.gradient_flow(module, ids, K=K, n_targets=n, seed=gradient_cache.SEED)
        cold += time.perf_counter() - t
    return stored, cold


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keep", type=Path, help="use (and keep) this runs folder, which must not exist yet")
    ap.add_argument("--first-only", action="store_true", help="stop once Start here is complete (no preparation)")
    args = ap.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="lstmviz-first-")) / "runs"
    if root.exists():
        raise SystemExit(f"{root} exists: the bench needs a clean runs folder")
    root.parent.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {**os.environ, "LSTMVIZ_RUNS": str(root), "PYTHONPATH": str(REPO)}
    argv = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true"]
    argv += ["--server.address", "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false"]
    log = open(root.parent / "streamlit.log", "w")  # noqa: SIM115 - the server's log for its whole life
    t0 = time.monotonic()
    server = subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=log)
    try:
        for _ in range(600):
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.05)
        first, complete = browse(f"http://127.0.0.1:{port}", t0)
        if args.first_only:
            print(f"first_interactive_s: {first:.1f}")
            print(f"start_here_complete_s: {complete:.1f}")
            print(f"load_average_1min: {os.getloadavg()[0]:.1f}")
            return
        status = root / ".prepare.json"
        while True:
            try:
                done = json.loads(status.read_text())
                if done["finished"]:
                    break
            except (OSError, ValueError):
                pass
            if time.monotonic() - t0 > 1800:
                raise SystemExit("the preparation did not finish within 30 min")
            time.sleep(0.5)
        prepared = time.monotonic() - t0
    finally:
        server.terminate()
        server.wait(timeout=30)
    stored, cold = overlay_seconds(root)
    print(f"gradient_overlay_cold_over_stored: {cold / max(stored, 1e-9):.0f}")
    print(f"first_interactive_s: {first:.1f}")
    print(f"start_here_complete_s: {complete:.1f}")
    print(f"all_prepared_s: {prepared:.1f}")
    print(f"load_average_1min: {os.getloadavg()[0]:.1f}")
    print(f"gradient_overlay_stored_s: {stored:.3f}")
    print(f"gradient_overlay_cold_s: {cold:.1f}")
    for step in done["steps"]:
        error = " (error)" if step["error"] else ""
        print(f"step_{step['kind']}_{step['sample']}_s: {step['seconds']} wall, {step.get('cpu_s')} cpu{error}")


if __name__ == "__main__":
    main()
