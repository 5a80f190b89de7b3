"""Load benchmark of ``prefalign annotate serve`` on its default SQLite database.

50 concurrent clients (one annotator each) fetch a task and vote on it, again and again, for
60 s against a server started in a subprocess on 127.0.0.1. Prints votes per second, the
latency of a vote (p50/p99) and of fetching the next task, and checks that the votes in the
database equal the votes the server acknowledged.

    python benchmarks/bench_annotate_load.py [--clients 50] [--seconds 60]

Clients and server share the machine, so on a small one the figures include the clients' own
CPU use. Not part of the test run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from PIL import Image

from prefalign.annotate import Store, StudyConfig, add_annotator, create_study
from prefalign.data.dataset import Record, save_dataset


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


def start_server(study: Path, port: int) -> subprocess.Popen:
    src = Path(__file__).resolve().parents[1] / "src"
    env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    command = [sys.executable, "-m", "prefalign.cli.main", "annotate", "serve", "--study", str(study)]
    server = subprocess.Popen([*command, "--port", str(port)], env=env, stdout=subprocess.DEVNULL)
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


async def client(base: str, token: str, stop_at: float, stats: dict) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=120) as http:
        while time.monotonic() < stop_at:
            t0 = time.perf_counter()
            response = await http.get("/api/task")
            stats["fetch_latency"].append(time.perf_counter() - t0)
            task = response.json().get("task") if response.status_code == 200 else None
            if task is None:
                stats["errors" if response.status_code != 200 else "exhausted"] += 1
                return
            t0 = time.perf_counter()
            response = await http.post("/api/vote", json={"task": task["id"], "answer": "0"})
            stats["vote_latency"].append(time.perf_counter() - t0)
            if response.status_code == 200 and response.json()["status"] == "recorded":
                stats["acknowledged"] += 1
            else:
                stats["errors"] += 1


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def run(base: str, tokens: list[str], seconds: float) -> dict:
    stats = {"acknowledged": 0, "errors": 0, "exhausted": 0, "vote_latency": [], "fetch_latency": []}
    stop_at = time.monotonic() + seconds
    started = time.perf_counter()
    await asyncio.gather(*(client(base, token, stop_at, stats) for token in tokens))
    stats["elapsed"] = time.perf_counter() - started
    return stats


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument(
        "--tasks", type=int, default=3000, help="tasks in the study (each open to every client)"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-annotate-") as tmp:
        study = Path(tmp) / "study"
        tokens = build_study(study, args.tasks, args.clients)
        port = free_port()
        server = start_server(study, port)
        try:
            stats = asyncio.run(run(f"http://127.0.0.1:{port}", tokens, args.seconds))
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(timeout=30)
        with sqlite3.connect(study / "annotations.db") as db:
            stored = db.execute("SELECT count(*) FROM votes").fetchone()[0]
            distinct = db.execute(
                "SELECT count(DISTINCT task_id || '/' || annotator_id) FROM votes"
            ).fetchone()[0]

    votes_per_s = stats["acknowledged"] / stats["elapsed"]
    print(f"clients: {args.clients}, duration: {stats['elapsed']:.1f} s, SQLite (WAL, synchronous=FULL)")
    print(f"votes acknowledged: {stats['acknowledged']}  ({votes_per_s:.1f} votes/s)")
    vote_ms = [1000 * x for x in stats["vote_latency"]]
    fetch_ms = [1000 * x for x in stats["fetch_latency"]]
    print(f"vote latency:  p50 {percentile(vote_ms, 0.5):.1f} ms, p99 {percentile(vote_ms, 0.99):.1f} ms")
    print(f"fetch latency: p50 {percentile(fetch_ms, 0.5):.1f} ms, p99 {percentile(fetch_ms, 0.99):.1f} ms")
    print(f"errors: {stats['errors']}, clients that ran out of tasks: {stats['exhausted']}")
    ok = stored == distinct == stats["acknowledged"]
    verdict = "OK: equal to the acknowledged votes" if ok else "MISMATCH with the acknowledged votes"
    print(f"votes in the database: {stored} (distinct task/annotator: {distinct}) -> {verdict}")
    return 0 if ok and stats["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
