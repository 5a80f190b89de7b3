"""Load benchmark of ``prefalign annotate serve`` against a minimal reference app, in one run.

Each phase starts a server in a subprocess on 127.0.0.1 on its own SQLite database and runs
``--clients`` concurrent clients (one annotator each) for ``--seconds``. Two servers:

* **reference** — a minimal FastAPI + stdlib ``sqlite3`` app with the same durability (WAL,
  ``synchronous=FULL``), a token check per request, one assignment insert per task fetch and
  one vote insert per vote, and a bare HTML page and image route for the browser flow. It lives
  here, in the benchmark, not in the product: it is the yardstick.
* **app** — ``prefalign annotate serve``.

and two flows, each run on both servers, alternating (reference, app, reference, app), so that
a change of the machine's load between phases hits both:

* **API** — ``GET /api/task`` then ``POST /api/vote``.
* **browser flow** — what a browser does per task: ``GET /`` (HTML), the task's images
  (``GET /image/<task>/<p>``, at once), then the form ``POST /vote`` (303).

Prints votes/s, vote latency p50/p99 and the server's CPU time per vote for each phase, the
ratios app/reference per flow (of votes/s, and of CPU per vote inverted, so that above 1 is
better for both), and checks that the votes in each database equal the votes acknowledged.

    python benchmarks/bench_annotate_load.py [--clients 50] [--seconds 30]

Clients and servers share the machine, so on a small one the figures include the clients' own
CPU use; compare the ratios, which both sides pay alike. On a machine loaded by other work
votes/s swing by 2x between phases; the server CPU per vote moves far less. Linux only for the
CPU figure (``/proc``). Not part of the test run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from fastapi import FastAPI, HTTPException, Request
from PIL import Image

from prefalign.annotate import Store, StudyConfig, add_annotator, create_study
from prefalign.annotate.tokens import hash_token
from prefalign.data.dataset import Record, save_dataset

# --- the reference app (benchmark only) -------------------------------------------------------

REFERENCE_SCHEMA = """
CREATE TABLE IF NOT EXISTS tokens (hash TEXT PRIMARY KEY, annotator INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS tasks (id INTEGER PRIMARY KEY, prompt TEXT NOT NULL, images TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS assignments (
    id INTEGER PRIMARY KEY, task INTEGER NOT NULL, annotator INTEGER NOT NULL, answered INTEGER DEFAULT 0,
    UNIQUE (task, annotator));
CREATE TABLE IF NOT EXISTS votes (
    id INTEGER PRIMARY KEY, assignment INTEGER NOT NULL UNIQUE, answer INTEGER NOT NULL, created REAL);
"""


def reference_app(db: str, root: str):
    """FastAPI + sqlite3: WAL, synchronous=FULL, one write lock, a connection per thread.

    The API (``GET /api/task``, ``POST /api/vote``) and what a browser uses: ``GET /`` (an HTML
    page naming the task and its images), ``GET /image/<task>/<p>`` (a file, after the token
    and assignment checks) and the form ``POST /vote`` (303 back to ``/``).
    """
    import html
    import json
    import threading

    from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
    from starlette.concurrency import run_in_threadpool

    app = FastAPI()
    local = threading.local()
    write_lock = threading.Lock()

    def conn() -> sqlite3.Connection:
        if not hasattr(local, "c"):
            c = sqlite3.connect(db, isolation_level=None, check_same_thread=False, timeout=60)
            c.execute("PRAGMA journal_mode=WAL")
            c.execute("PRAGMA synchronous=FULL")
            local.c = c
        return local.c

    def annotator(request: Request) -> int:
        header = request.headers.get("authorization", "")
        token = header[7:] if header else request.cookies.get("prefalign_token", "")
        row = conn().execute("SELECT annotator FROM tokens WHERE hash = ?", (hash_token(token),)).fetchone()
        if row is None:
            raise HTTPException(403)
        return row[0]

    def current_task(who: int):
        c = conn()
        with write_lock:
            c.execute("BEGIN IMMEDIATE")
            try:
                row = c.execute(
                    "SELECT t.id, t.prompt, t.images FROM assignments a JOIN tasks t ON t.id = a.task "
                    "WHERE a.annotator = ? AND a.answered = 0",
                    (who,),
                ).fetchone()
                if row is None:
                    row = c.execute(
                        "SELECT id, prompt, images FROM tasks WHERE id NOT IN "
                        "(SELECT task FROM assignments WHERE annotator = ?) ORDER BY id LIMIT 1",
                        (who,),
                    ).fetchone()
                    if row is not None:
                        c.execute("INSERT INTO assignments (task, annotator) VALUES (?, ?)", (row[0], who))
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise
        return row

    def record(who: int, task: object, answer: object) -> int:
        c = conn()
        with write_lock:
            c.execute("BEGIN IMMEDIATE")
            try:
                row = c.execute(
                    "SELECT id FROM assignments WHERE task = ? AND annotator = ?", (int(task), who)
                ).fetchone()
                if row is None:
                    raise HTTPException(403)
                c.execute(
                    "INSERT INTO votes (assignment, answer, created) VALUES (?, ?, ?)",
                    (row[0], int(answer), time.time()),
                )
                c.execute("UPDATE assignments SET answered = 1 WHERE id = ?", (row[0],))
                vote_id = c.execute("SELECT last_insert_rowid()").fetchone()[0]
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise
        return vote_id

    @app.get("/api/task")
    def task(request: Request):
        row = current_task(annotator(request))
        return {"task": None if row is None else {"id": row[0], "prompt": row[1]}}

    @app.post("/api/vote")
    async def vote(request: Request):
        who = await run_in_threadpool(annotator, request)
        body = await request.json()
        vote_id = await run_in_threadpool(record, who, body["task"], body["answer"])
        return {"status": "recorded", "vote": vote_id}

    @app.get("/", response_class=HTMLResponse)
    def page(request: Request):
        row = current_task(annotator(request))
        if row is None:
            return "<p>Thank you</p>"
        images = "".join(
            f'<button name="answer" value="{p}"><img src="/image/{row[0]}/{p}"></button>'
            for p in range(len(json.loads(row[2])))
        )
        return (
            f"<!doctype html><p>{html.escape(row[1])}</p><form method=post action=/vote>"
            f'<input type="hidden" name="task" value="{row[0]}">{images}</form>'
        )

    @app.get("/image/{task_id}/{position}")
    def image(request: Request, task_id: int, position: int):
        who = annotator(request)
        row = (
            conn()
            .execute(
                "SELECT t.images FROM assignments a JOIN tasks t ON t.id = a.task WHERE a.task = ? AND a.annotator = ?",
                (task_id, who),
            )
            .fetchone()
        )
        if row is None:
            raise HTTPException(404)
        return FileResponse(os.path.join(root, json.loads(row[0])[position]))

    @app.post("/vote")
    async def vote_form(request: Request):
        who = await run_in_threadpool(annotator, request)
        form = await request.form()
        await run_in_threadpool(record, who, form["task"], form["answer"])
        return RedirectResponse("/", status_code=303)

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    return app


def build_reference(db: Path, n_tasks: int, tokens: list[str]) -> None:
    images = '["images/a.png", "images/b.png"]'  # those of build_study
    with sqlite3.connect(db) as c:
        c.executescript(REFERENCE_SCHEMA)
        c.executemany(
            "INSERT INTO tasks (id, prompt, images) VALUES (?, ?, ?)",
            [(i + 1, f"prompt {i}", images) for i in range(n_tasks)],
        )
        c.executemany("INSERT INTO tokens VALUES (?, ?)", [(hash_token(t), i) for i, t in enumerate(tokens)])


# --- the app under test ----------------------------------------------------------------------


def build_study(root: Path, n_tasks: int, n_clients: int) -> list[str]:
    """A pair study of ``n_tasks`` tasks that every client may answer; returns one token each."""
    (root / "images").mkdir(parents=True)
    for name, colour in (("a.png", (200, 60, 60)), ("b.png", (60, 60, 200))):
        Image.new("RGB", (256, 256), colour).save(root / "images" / name)
    records = [
        Record(id=f"p{i}", prompt=f"prompt {i}", images=["images/a.png", "images/b.png"])
        for i in range(n_tasks)
    ]
    save_dataset(records, root)
    store = Store.open(root / "annotations.db")
    study = create_study(store, root, StudyConfig("load", "pair", annotators_per_task=n_clients))
    tokens = [add_annotator(store, study, f"client-{i}") for i in range(n_clients)]
    store.close()
    return tokens


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(command: list[str], port: int, src: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.2)
        if server.poll() is not None:
            raise SystemExit(f"the server exited with status {server.returncode}")
    server.kill()
    raise SystemExit("the server did not start within 60 s")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux ``/proc``; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop(server: subprocess.Popen) -> None:
    server.send_signal(signal.SIGINT)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()


# --- clients ---------------------------------------------------------------------------------

_TASK_FIELD = re.compile(r'name="task" value="(\d+)"')
_IMAGE = re.compile(r'src="(/image/\d+/\d+)"')


async def api_client(http: httpx.AsyncClient, stop_at: float, stats: dict) -> None:
    while time.monotonic() < stop_at:
        response = await http.get("/api/task")
        task = response.json().get("task") if response.status_code == 200 else None
        if task is None:
            stats["errors" if response.status_code != 200 else "exhausted"] += 1
            return
        t0 = time.perf_counter()
        response = await http.post("/api/vote", json={"task": task["id"], "answer": 0})
        stats["vote_latency"].append(time.perf_counter() - t0)
        if response.status_code == 200 and response.json()["status"] == "recorded":
            stats["acknowledged"] += 1
        else:
            stats["errors"] += 1


async def get(http: httpx.AsyncClient, url: str, stats: dict) -> httpx.Response:
    """GET, retried once when the server closed an idle keep-alive connection as it was reused
    (uvicorn closes idle connections after 5 s; browsers retry such a GET the same way)."""
    try:
        return await http.get(url)
    except httpx.RemoteProtocolError:
        stats["retried"] += 1
        return await http.get(url)


async def browser_client(http: httpx.AsyncClient, stop_at: float, stats: dict) -> None:
    while time.monotonic() < stop_at:
        t0 = time.perf_counter()
        page = await get(http, "/", stats)
        match = _TASK_FIELD.search(page.text) if page.status_code == 200 else None
        if match is None:
            stats["errors" if page.status_code != 200 else "exhausted"] += 1
            return
        images = await asyncio.gather(*(get(http, url, stats) for url in _IMAGE.findall(page.text)))
        stats["page_latency"].append(time.perf_counter() - t0)
        if any(r.status_code != 200 for r in images):
            stats["errors"] += 1
        t0 = time.perf_counter()
        response = await http.post("/vote", data={"task": match.group(1), "answer": "0"})
        stats["vote_latency"].append(time.perf_counter() - t0)
        if response.status_code == 303:
            stats["acknowledged"] += 1
        else:
            stats["errors"] += 1


async def run(base: str, tokens: list[str], seconds: float, flow: str) -> dict:
    stats = {
        "acknowledged": 0,
        "errors": 0,
        "exhausted": 0,
        "retried": 0,
        "vote_latency": [],
        "page_latency": [],
    }
    stop_at = time.monotonic() + seconds

    async def one(token: str) -> None:
        if flow == "browser":  # the cookie an invite link sets, and a browser's Origin header
            options = {"cookies": {"prefalign_token": token}, "headers": {"Origin": base}}
        else:
            options = {"headers": {"Authorization": f"Bearer {token}"}}
        async with httpx.AsyncClient(base_url=base, timeout=120, **options) as http:
            await (browser_client if flow == "browser" else api_client)(http, stop_at, stats)

    started = time.perf_counter()
    await asyncio.gather(*(one(token) for token in tokens))
    stats["elapsed"] = time.perf_counter() - started
    return stats


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def report(name: str, stats: dict, stored: int) -> tuple[tuple[float, float], bool]:
    rate = stats["acknowledged"] / stats["elapsed"]
    lat = stats["vote_latency"]
    line = f"{name:<26} {rate:7.1f} votes/s   vote p50 {percentile(lat, 0.5):6.1f} ms  p99 {percentile(lat, 0.99):6.1f} ms"
    if stats["page_latency"]:
        page = stats["page_latency"]
        line += f"   page+images p50 {percentile(page, 0.5):6.1f} ms  p99 {percentile(page, 0.99):6.1f} ms"
    # Server CPU per vote: what the server's own work costs, much less sensitive than votes/s
    # to what else runs on the machine.
    line += f"   server CPU {1000 * stats['server_cpu'] / max(1, stats['acknowledged']):5.1f} ms/vote"
    ok = stored == stats["acknowledged"] and stats["errors"] == 0
    line += f"   acknowledged {stats['acknowledged']}, stored {stored}, errors {stats['errors']}"
    if stats["retried"]:
        line += f", GETs retried on a closed keep-alive connection {stats['retried']}"
    print(line + ("" if ok else "   <- MISMATCH"), flush=True)
    return (rate, stats["server_cpu"] / max(1, stats["acknowledged"])), ok


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30.0, help="per phase")
    parser.add_argument(
        "--tasks", type=int, default=3000, help="tasks in the study (each open to every client)"
    )
    parser.add_argument(
        "--app-src",
        type=Path,
        default=Path(__file__).resolve().parents[1] / "src",
        help="the src directory of the prefalign version to serve (default: this checkout's), "
        "to compare versions",
    )
    parser.add_argument("--serve-reference", nargs=2, metavar=("DB", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_reference:
        import uvicorn

        db, port = args.serve_reference
        app = reference_app(db, str(Path(db).parent))
        uvicorn.run(app, host="127.0.0.1", port=int(port), log_level="warning")
        return 0

    print(
        f"clients: {args.clients}, {args.seconds:.0f} s per phase, SQLite (WAL, synchronous=FULL)", flush=True
    )
    results = {}
    all_ok = True
    with tempfile.TemporaryDirectory(prefix="bench-annotate-") as tmp:
        # Alternated, so that a change of the machine's load between phases hits both apps.
        for phase in ("reference (API)", "app (API)", "reference (browser flow)", "app (browser flow)"):
            root = Path(tmp) / phase.replace(" ", "_").replace("(", "").replace(")", "")
            tokens = build_study(root, args.tasks, args.clients)
            port = free_port()
            if phase.startswith("reference"):
                db = root / "reference.db"
                build_reference(db, args.tasks, tokens)
                command = [sys.executable, __file__, "--serve-reference", str(db), str(port)]
                count = "SELECT count(*) FROM votes"
            else:
                db = root / "annotations.db"
                command = [
                    sys.executable,
                    "-m",
                    "prefalign.cli.main",
                    "annotate",
                    "serve",
                    "--study",
                    str(root),
                ]
                command += ["--port", str(port)]
                count = "SELECT count(*) FROM votes"
            server = start(command, port, args.app_src)
            try:
                flow = "browser" if "browser" in phase else "api"
                cpu_before = cpu_seconds(server.pid)
                stats = asyncio.run(run(f"http://127.0.0.1:{port}", tokens, args.seconds, flow))
                stats["server_cpu"] = cpu_seconds(server.pid) - cpu_before
            finally:
                stop(server)
            with sqlite3.connect(db) as c:
                stored = c.execute(count).fetchone()[0]
            results[phase], ok = report(phase, stats, stored)
            all_ok = all_ok and ok
    for flow in ("API", "browser flow"):
        (app, app_cpu), (reference, reference_cpu) = results[f"app ({flow})"], results[f"reference ({flow})"]
        ratio = app / reference if reference else float("nan")
        print(
            f"ratio app / reference, {flow}: {ratio:.2f} in votes/s (target >= 0.8), "
            f"{reference_cpu / app_cpu if app_cpu else float('nan'):.2f} in server CPU per vote"
        )
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
