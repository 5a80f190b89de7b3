"""End to end in a real browser: the server on 127.0.0.1, Debian's Chromium driven by Playwright.

Votes by mouse and by keyboard, then checks the exported dataset. Skips (this test only) when
Chromium or Playwright is missing, unless PREFALIGN_REQUIRE_BROWSER=1 (set by .ci/run, which
installs chromium): there a skip is a failure.

Set PREFALIGN_SCREENSHOT_DIR=docs to refresh docs/annotate-voting.png.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image, ImageDraw

import prefalign
from prefalign.cli.main import main
from prefalign.data.dataset import Record, load_dataset, save_dataset

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("PREFALIGN_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# Prompts of the HPS user-study kind, with two renderings each: one faithful, one not.
PROMPTS = [
    ("a red circle above a blue square", ("red", "circle"), ("blue", "square")),
    ("a yellow triangle on a green background", ("yellow", "triangle"), ("green", "background")),
    ("two purple circles side by side", ("purple", "circle"), ("purple", "circle")),
    ("an orange square inside a white circle", ("orange", "square"), ("white", "circle")),
]


def draw(path: Path, shapes: list[tuple[str, str]], background: str, size: int = 384) -> None:
    """A small synthetic 'generation': a few coloured shapes on a background."""
    image = Image.new("RGB", (size, size), background)
    pen = ImageDraw.Draw(image)
    for i, (colour, shape) in enumerate(shapes):
        x0, y0 = 70 + 120 * (i % 2), 60 + 140 * (i // 2 if len(shapes) > 2 else i)
        box = (x0, y0, x0 + 120, y0 + 120)
        if shape == "circle":
            pen.ellipse(box, fill=colour, outline="black", width=3)
        elif shape == "square":
            pen.rectangle(box, fill=colour, outline="black", width=3)
        elif shape == "triangle":
            pen.polygon([(x0 + 60, y0), (x0 + 120, y0 + 120), (x0, y0 + 120)], fill=colour, outline="black")
    image.save(path)


def write_pair_dataset(root: Path) -> Path:
    (root / "images").mkdir(parents=True)
    records = []
    for i, (prompt, first, second) in enumerate(PROMPTS):
        base, adapted = f"images/base-{i}.png", f"images/adapted-{i}.png"
        draw(root / base, [first], "#dfe6ee")
        draw(root / adapted, [first, second], "#f4efe4" if "background" not in prompt else "green")
        records.append(Record(id=f"p{i}", prompt=prompt, images=[base, adapted], split="test"))
    save_dataset(records, root)
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("PREFALIGN_REQUIRE_BROWSER") == "1":
        pytest.fail(f"PREFALIGN_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _skip_or_fail("the browser test needs Playwright's Python package (pip install playwright)")
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        _skip_or_fail(f"the browser test needs Debian's chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def server(tmp_path):
    """Create a pair study and an annotator through the CLI, then serve it in a subprocess."""
    study = write_pair_dataset(tmp_path / "study")
    create = ["annotate", "create-study", "--study", str(study), "--kind", "pair", "--name", "hps-user-study"]
    assert main(create) == 0
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    assert main(["annotate", "add-annotator", "--study", str(study), "--base-url", base, "alice"]) == 0
    src = str(Path(prefalign.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "prefalign.cli.main", "annotate", "serve", "--study", str(study)]
    log = open(tmp_path / "server.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen([*command, "--port", str(port)], env=env, stdout=log, stderr=log)
    try:
        for _ in range(300):  # until /healthz answers (no time limit is asserted)
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, (tmp_path / "server.log").read_text()
            time.sleep(0.1)
        yield {"base": base, "study": study}
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def test_vote_by_mouse_and_keyboard_then_export(browser, server, tmp_path, capsys):
    capsys.readouterr()
    base, study = server["base"], server["study"]
    # The invite link printed by add-annotator.
    main(["annotate", "add-annotator", "--study", str(study), "--base-url", base, "bob"])
    invite = capsys.readouterr().out.strip().split("\t")[1]

    page = browser.new_page(viewport={"width": 1100, "height": 760})
    page.goto(invite)
    assert page.url == f"{base}/"
    assert page.locator("#progress").inner_text() == "Task 1 of 4"
    prompt = page.locator("#prompt").inner_text()
    assert prompt in {p for p, _, _ in PROMPTS}
    page.wait_for_function("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
    assert page.locator("img").count() == 2
    screenshot = page.screenshot()
    assert screenshot.startswith(b"\x89PNG")
    if os.environ.get("PREFALIGN_SCREENSHOT_DIR"):
        Path(os.environ["PREFALIGN_SCREENSHOT_DIR"], "annotate-voting.png").write_bytes(screenshot)

    clicked = []
    # 1: the mouse, on the left image.
    page.locator("button.option").nth(0).click()
    page.wait_for_url(f"{base}/")
    assert page.locator("#progress").inner_text() == "Task 2 of 4"
    clicked.append(0)
    # 2 and 3: the keyboard, an arrow and a digit.
    for key, position, after in (("ArrowRight", 1, "Task 3 of 4"), ("2", 1, "Task 4 of 4")):
        with page.expect_navigation():
            page.keyboard.press(key)
        assert page.locator("#progress").inner_text() == after
        clicked.append(position)
    # 4: a double click records one vote.
    with page.expect_navigation():
        page.locator("button.option").nth(0).dblclick()
    clicked.append(0)
    page.wait_for_selector("#done")
    assert "You answered 4 tasks" in page.locator("#done").inner_text()

    assert main(["annotate", "export", "--study", str(study), "--out", str(tmp_path / "votes")]) == 0
    dataset = load_dataset(tmp_path / "votes")
    assert len(dataset) == 4
    records = sorted(dataset, key=lambda r: r.meta["voted_at"])
    assert [r.meta["shown_position"] for r in records] == clicked
    for record in records:
        assert record.user == "bob"
        assert record.chosen == record.meta["shown_order"][record.meta["shown_position"]]
        i = record.meta["record"][1:]
        assert record.images == [f"images/base-{i}.png", f"images/adapted-{i}.png"]
        assert (tmp_path / "votes" / record.images[record.chosen]).is_file()
    assert {r.prompt for r in records} == {p for p, _, _ in PROMPTS}


def test_unknown_visitors_see_an_error_page_not_tasks(browser, server):
    page = browser.new_page()
    response = page.goto(f"{server['base']}/")
    assert response.status == 403
    assert "invite link" in page.locator("#error").inner_text()
    assert page.locator("img").count() == 0
    response = page.goto(f"{server['base']}/invite/forged-token")
    assert response.status == 403
