"""Faults (issue 17): damaged databases, interrupted create-study and export, file modes."""

from __future__ import annotations

import stat

import pytest
from sqlalchemy import func, select

from prefalign.annotate import Store, StudyConfig, create_study, export_study, read_study_config
from prefalign.annotate.errors import StudyError
from prefalign.annotate.models import Study, Task
from prefalign.cli.main import main
from prefalign.data.dataset import load_dataset

from .conftest import write_dataset


def test_the_database_file_is_private(tmp_path):
    store = Store.open(tmp_path / "annotations.db")
    with store.transaction() as session:  # a write, so that -wal and -shm exist
        session.add(Study(name="s", kind="pair", annotators_per_task=1, question="q", root="/"))
    for name in ("annotations.db", "annotations.db-wal", "annotations.db-shm"):
        mode = stat.S_IMODE((tmp_path / name).stat().st_mode)
        assert mode == 0o600, (name, oct(mode))
    store.close()


def test_a_damaged_header_is_one_line_naming_the_file(tmp_path, capsys):
    study = write_dataset(tmp_path / "study", 2, 2)
    assert main(["annotate", "create-study", "--study", str(study), "--kind", "pair"]) == 0
    db = study / "annotations.db"
    with open(db, "r+b") as fh:
        fh.write(b"this is no SQLite header")
    capsys.readouterr()
    for command in (["serve"], ["export", "--out", str(tmp_path / "out")], ["add-annotator", "x"]):
        assert main(["annotate", command[0], "--study", str(study), *command[1:]]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err
        assert str(db) in err and "damaged" in err and "backup" in err


def test_a_damaged_page_inside_is_found_at_start_not_at_export(tmp_path):
    study = write_dataset(tmp_path / "study", 1, 2)
    db = tmp_path / "big.db"
    store = Store.open(db)
    created = create_study(store, study, StudyConfig("big", "pair"))
    with store.transaction() as session:  # enough rows for several table pages
        session.add_all(
            Task(study_id=created.id, key=f"k{i}", record_id=f"k{i}", prompt="p" * 200, images=["a.png"],
                 done_votes=0, slots_used=0, shuffle_key=i)
            for i in range(2000)
        )  # fmt: skip
    store.close()
    page_size = 4096
    data = bytearray(db.read_bytes())
    assert len(data) > 20 * page_size
    middle = (len(data) // page_size // 2) * page_size
    data[middle : middle + page_size] = b"\xa5" * page_size
    db.write_bytes(bytes(data))
    with pytest.raises(StudyError, match=r"damaged.*(malformed|quick_check)"):
        Store.open(db)


def test_a_failed_create_study_leaves_no_database_and_no_study_file(tmp_path, capsys):
    study = write_dataset(tmp_path / "study", 2, 3)  # 3 images: not a pair study
    assert main(["annotate", "create-study", "--study", str(study), "--kind", "pair"]) == 2
    assert "exactly 2 images" in capsys.readouterr().err
    assert not (study / "annotations.db").exists() and not (study / "study.json").exists()
    assert sorted(p.name for p in study.iterdir()) == ["images", "records.parquet"]


def test_a_failed_database_step_removes_study_json(tmp_path, monkeypatch):
    study = write_dataset(tmp_path / "study", 2, 2)
    store = Store.open(tmp_path / "a.db")
    from prefalign.annotate import study as study_module

    def broken(*_args, **_kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(study_module, "Task", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        create_study(store, study, StudyConfig("s", "pair"))
    assert not (study / "study.json").exists()
    monkeypatch.undo()
    create_study(store, study, StudyConfig("s", "pair"))  # and nothing blocks a new attempt
    store.close()


def test_create_study_killed_after_study_json_is_finished_by_running_it_again(tmp_path, capsys):
    study = write_dataset(tmp_path / "study", 3, 2)
    store = Store.open(tmp_path / "a.db")
    from prefalign.annotate.study import _write_study_config

    # The state a kill -9 between the two steps leaves: study.json, no tasks.
    _write_study_config(study, StudyConfig("s", "pair", 2, "Which one?"))
    with pytest.raises(StudyError, match="interrupted, run it again"):
        from prefalign.annotate import create_app

        create_app(store, study)
    with pytest.raises(StudyError, match="already the directory"):
        create_study(store, study, StudyConfig("s", "pair", 3))  # other settings: refused
    create_study(store, study, StudyConfig("s", "pair", 2))
    with store.transaction() as session:
        assert session.scalar(select(func.count()).select_from(Task)) == 3
    assert read_study_config(study).question == "Which one?"
    store.close()


def test_tasks_without_study_json_are_finished_by_running_create_study_again(tmp_path):
    study = write_dataset(tmp_path / "study", 3, 2)
    store = Store.open(tmp_path / "a.db")
    create_study(store, study, StudyConfig("s", "pair", 2))
    (study / "study.json").unlink()  # what the old order (database first) left after a crash
    again = create_study(store, study, StudyConfig("s", "pair", 2))
    assert read_study_config(study).name == "s" and again.name == "s"
    with store.transaction() as session:
        assert session.scalar(select(func.count()).select_from(Study)) == 1
    other = write_dataset(tmp_path / "other", 1, 2)
    with pytest.raises(StudyError, match="already exists"):
        create_study(store, other, StudyConfig("s", "pair", 2))  # another directory: refused
    store.close()


def test_export_removes_the_temporary_files_of_an_interrupted_export(tmp_path, make_study, caplog):
    store, study, study_dir = make_study(kind="pair", n_records=2)
    out = tmp_path / "votes"
    out.mkdir()
    stale = [out / ".records-abc123.parquet.tmp", out / ".records-zz.parquet.tmp"]
    for path in stale:
        path.write_bytes(b"half a parquet file")
    (out / "notes.txt").write_text("mine")
    with caplog.at_level("WARNING"):
        export_study(store, study, study_dir, out)
    assert not any(path.exists() for path in stale)
    assert (out / "notes.txt").read_text() == "mine"
    assert "removed 2 temporary file(s)" in caplog.text
    assert len(load_dataset(out)) == 0


def test_acknowledged_votes_survive_kill_9_of_the_server_while_it_group_commits(tmp_path):
    """Eight clients vote through a real server process; it is killed with SIGKILL mid-run. Every
    vote acknowledged before the kill is in the database (group commit acknowledges a vote only
    after the COMMIT that holds it)."""
    import os
    import signal
    import socket
    import sqlite3
    import subprocess
    import sys
    import threading
    import time
    from pathlib import Path

    import httpx

    from prefalign.annotate import add_annotator

    study_dir = write_dataset(tmp_path / "study", 300, 2)
    store = Store.open(study_dir / "annotations.db")
    study = create_study(store, study_dir, StudyConfig("crash", "pair", 8))
    tokens = [add_annotator(store, study, f"a{i}") for i in range(8)]
    store.close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    command = [sys.executable, "-m", "prefalign.cli.main", "annotate", "serve", "--study", str(study_dir)]
    server = subprocess.Popen(
        [*command, "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        acknowledged: list[int] = []
        stop = threading.Event()

        def voter(token: str) -> None:
            with httpx.Client(
                base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30
            ) as http:
                while not stop.is_set():
                    try:
                        task = http.get("/api/task").json()["task"]
                        reply = http.post("/api/vote", json={"task": task["id"], "answer": 0})
                    except (httpx.HTTPError, ValueError, TypeError):
                        return  # the server is gone
                    if reply.status_code == 200 and reply.json()["status"] == "recorded":
                        acknowledged.append(reply.json()["vote"])

        threads = [threading.Thread(target=voter, args=(token,)) for token in tokens]
        for thread in threads:
            thread.start()
        while len(acknowledged) < 40 and time.monotonic() < deadline:
            time.sleep(0.05)
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=30)
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        if server.poll() is None:
            server.kill()
    assert len(acknowledged) >= 40
    with sqlite3.connect(study_dir / "annotations.db") as connection:
        stored = {row[0] for row in connection.execute("SELECT id FROM votes")}
    assert set(acknowledged) <= stored, sorted(set(acknowledged) - stored)
