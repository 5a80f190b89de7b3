"""fetch-images against a local HTTP server on 127.0.0.1 (no other network)."""

from __future__ import annotations

import io
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from prefalign.data import Record, load_dataset, save_dataset
from prefalign.data.fetch import fetch_images
from prefalign.data.mining import from_discord
from prefalign.data.validate import validate_dataset
from prefalign.testing.discord_export import FakeChannel, fake_user


def png(colour, size=(8, 8)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


def grid_png(colours, cols, rows, cell=10) -> bytes:
    img = Image.new("RGB", (cols * cell, rows * cell))
    for k, colour in enumerate(colours):
        r, c = divmod(k, cols)
        img.paste(Image.new("RGB", (cell, cell), colour), (c * cell, r * cell))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


class Server:
    """Serves ``files``; ``/flaky/*`` answers 503 twice first; ``/slow/*`` answers too late."""

    def __init__(self, files):
        self.files = files
        self.hits: Counter[str] = Counter()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                outer.hits[self.path] += 1
                if self.path.startswith("/flaky/") and outer.hits[self.path] <= 2:
                    self.send_error(503)
                    return
                if self.path.startswith("/slow/"):
                    time.sleep(1.5)
                body = outer.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                try:
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (the timeout test)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def test_fetch_grid_retry_failures_and_resume(tmp_path):
    files = {
        "/a.png": png(RED),
        "/b.png": png(GREEN),
        "/flaky/c.png": png(BLUE),
        "/grid.png": grid_png([RED, GREEN, BLUE, WHITE], 2, 2),
        "/notanimage.png": b"<html>sorry</html>",
    }
    with Server(files) as srv:
        u = srv.url
        recs = [
            Record(id="r1", prompt="p1", images=[f"{u}/a.png", f"{u}/b.png", f"{u}/flaky/c.png"], chosen=0),
            Record(
                id="r2", prompt="p2", images=[f"{u}/grid.png#grid=2x2&cell={k}" for k in range(4)], chosen=3
            ),
            Record(id="r3", prompt="p3", images=[f"{u}/a.png", f"{u}/missing.png"], chosen=1),
            Record(id="r4", prompt="p4", images=[f"{u}/b.png", f"{u}/notanimage.png"], chosen=1),
        ]
        save_dataset(recs, tmp_path)
        report = fetch_images(tmp_path, workers=4, timeout=5, retries=3)
        assert report.fetched == 4  # a, b, flaky c (third try), grid
        assert set(report.failed) == {f"{u}/missing.png", f"{u}/notanimage.png"}
        assert "404" in report.failed[f"{u}/missing.png"]
        assert "does not decode" in report.failed[f"{u}/notanimage.png"]
        assert srv.hits["/flaky/c.png"] == 3 and srv.hits["/grid.png"] == 1

        ds = load_dataset(tmp_path)
        r1, r2, r3, _ = ds.records
        assert all("://" not in i for i in r1.images) and r1.meta["image_urls"][0] == f"{u}/a.png"
        cells = [Image.open(ds.image_path(i)).convert("RGB") for i in r2.images]
        assert [c.size for c in cells] == [(10, 10)] * 4
        assert [c.getpixel((5, 5)) for c in cells] == [RED, GREEN, BLUE, WHITE]  # row-major
        assert r3.images[1] == f"{u}/missing.png" and "://" not in r3.images[0]
        assert not list(tmp_path.rglob("*.part")), "no partial files left"
        problems = validate_dataset(tmp_path).counts()
        assert problems == {"image not fetched": 2}

        # a second run tries only what is still missing
        before = sum(srv.hits.values())
        again = fetch_images(tmp_path, workers=2, timeout=5, retries=0)
        assert again.fetched == 0 and len(again.failed) == 2
        assert sum(srv.hits.values()) - before == 2

        # a run interrupted before the records were rewritten: files on disk are not fetched again
        save_dataset(recs, tmp_path)
        before = sum(srv.hits.values())
        resumed = fetch_images(tmp_path, workers=2, timeout=5, retries=0)
        assert resumed.fetched == 0 and resumed.already_present == 4
        assert sum(srv.hits.values()) - before == 2
        assert load_dataset(tmp_path).records[1].images == r2.images


def test_timeouts_fail_cleanly(tmp_path):
    with Server({"/slow/x.png": png(RED)}) as srv:
        save_dataset([Record(id="r", prompt="p", images=[f"{srv.url}/slow/x.png"])], tmp_path)
        report = fetch_images(tmp_path, timeout=0.3, retries=1)
        assert list(report.failed) == [f"{srv.url}/slow/x.png"]
        assert "after 2 tries" in report.failed[f"{srv.url}/slow/x.png"]
        assert srv.hits["/slow/x.png"] == 2


def test_media_export_is_copied_and_cut(tmp_path):
    """Exports made with --media have local files beside them; from-discord copies them in."""
    ch = FakeChannel("9", "media")
    alice = fake_user("11", "alice")
    r = ch.request(alice, "three cats", "-n 2")
    g = ch.generation(r, [1, 2])
    ch.request(alice, "three cats", "-S 2")
    r = ch.request(alice, "a grid of dogs", "-n 4 -g")
    grid = ch.generation(r, [5, 6, 7, 8], grid=True)
    ch.request(alice, "a grid of dogs", "-S 6")
    media = tmp_path / "export.json_Files"
    media.mkdir()
    for msg, blobs in ((g, [png(RED), png(GREEN)]), (grid, [grid_png([RED, GREEN, BLUE, WHITE], 2, 2)])):
        for att, blob in zip(msg["attachments"], blobs, strict=True):
            (media / att["fileName"]).write_bytes(blob)
            att["url"] = f"export.json_Files/{att['fileName']}"
    export = ch.write(tmp_path / "export.json")
    from_discord([export], tmp_path / "out")
    ds = load_dataset(tmp_path / "out")
    by_prompt = {r.prompt: r for r in ds}
    cats, dogs = by_prompt["three cats"], by_prompt["a grid of dogs"]
    assert cats.chosen == 1 and dogs.chosen == 1
    assert all(i.startswith("images/") for i in cats.images + dogs.images)
    assert Image.open(ds.image_path(dogs.images[1])).convert("RGB").getpixel((5, 5)) == GREEN
    assert validate_dataset(tmp_path / "out").ok


@pytest.mark.parametrize(
    "ref", ["http://127.0.0.1:9/x.png#grid=2x2&cell=7", "http://127.0.0.1:9/x.png#grid=0x1&cell=0"]
)
def test_bad_cell_references_are_plain_urls(ref):
    from prefalign.data.grid import parse_cell_ref

    assert parse_cell_ref(ref) is None
