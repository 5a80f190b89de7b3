"""``prefalign annotate`` from the command line: the commands, their help and their errors."""

from __future__ import annotations

import re

import pytest

from prefalign.cli.main import main
from prefalign.data.dataset import load_dataset

from .conftest import write_dataset


@pytest.mark.parametrize(
    "command",
    ["create-study", "add-annotator", "serve", "export", "revoke-annotator", "rotate-token", "results"],
)
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["annotate", command, "--help"])
    assert exit_info.value.code == 0
    assert "--study" in capsys.readouterr().out


def test_create_add_and_export_through_the_cli(tmp_path, capsys):
    from fastapi.testclient import TestClient

    from prefalign.annotate import Store, create_app

    source = write_dataset(tmp_path / "generated", 3, 2)
    study = tmp_path / "study"
    assert (
        main(["annotate", "create-study", "--study", str(study), "--from", str(source), "--kind", "pair"])
        == 0
    )
    out = capsys.readouterr().out
    assert "3 tasks" in out and "/invite/" in out
    assert main(["annotate", "add-annotator", "--study", str(study), "alice", "bob"]) == 0
    links = dict(line.split("\t") for line in capsys.readouterr().out.strip().splitlines())
    assert set(links) == {"alice", "bob"}
    token = re.search(r"/invite/(\S+)$", links["alice"]).group(1)

    store = Store.open(study / "annotations.db")
    client = TestClient(create_app(store, study))
    headers = {"Authorization": f"Bearer {token}"}
    while (task := client.get("/api/task", headers=headers).json()["task"]) is not None:
        client.post("/api/vote", json={"task": task["id"], "answer": "1"}, headers=headers)
    store.close()

    # By directory, and by name with --db.
    assert main(["annotate", "export", "--study", str(study), "--out", str(tmp_path / "v1")]) == 0
    db = str(study / "annotations.db")
    assert main(["annotate", "export", "--study", "study", "--db", db, "--out", str(tmp_path / "v2")]) == 0
    assert "wrote 3 votes" in capsys.readouterr().out
    for out_dir in ("v1", "v2"):
        dataset = load_dataset(tmp_path / out_dir)
        assert len(dataset) == 3 and {r.user for r in dataset} == {"alice"}


def test_user_errors_are_one_line_with_exit_status_2(tmp_path, capsys):
    study = write_dataset(tmp_path / "study", 2, 3)
    assert main(["annotate", "create-study", "--study", str(study), "--kind", "pair"]) == 2
    assert "exactly 2 images" in capsys.readouterr().err
    copy = [
        "annotate",
        "create-study",
        "--study",
        str(tmp_path / "new"),
        "--from",
        str(study),
        "--kind",
        "pair",
    ]
    assert main(copy) == 2
    assert "exactly 2 images" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()  # refused before anything was copied
    assert main(["annotate", "serve", "--study", str(tmp_path / "nowhere")]) == 2
    assert "not a study directory" in capsys.readouterr().err
    assert main(["annotate", "export", "--study", "some-name", "--out", str(tmp_path / "o")]) == 2
    assert "give --db" in capsys.readouterr().err
    main(["annotate", "create-study", "--study", str(write_dataset(tmp_path / "ok", 1, 2)), "--kind", "pair"])
    capsys.readouterr()
    assert main(["annotate", "add-annotator", "--study", str(tmp_path / "ok"), "dup", "dup"]) == 2
    assert "already has someone named 'dup'" in capsys.readouterr().err


def test_revoke_and_rotate_through_the_cli(tmp_path, capsys):
    from fastapi.testclient import TestClient

    from prefalign.annotate import Store, create_app

    study = write_dataset(tmp_path / "study", 2, 2)
    assert main(["annotate", "create-study", "--study", str(study), "--kind", "pair"]) == 0
    assert main(["annotate", "add-annotator", "--study", str(study), "alice"]) == 0
    alice = capsys.readouterr().out.strip().rsplit("/", 1)[1]
    assert main(["annotate", "revoke-annotator", "--study", str(study), "alice"]) == 0
    assert "alice: token revoked" in capsys.readouterr().out
    base = ["--study", str(study), "--base-url", "https://annotate.example.org"]
    assert main(["annotate", "rotate-token", *base, "admin"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("admin\thttps://annotate.example.org/invite/")
    admin = line.rsplit("/", 1)[1]
    store = Store.open(study / "annotations.db")
    client = TestClient(create_app(store, study))
    assert client.get("/api/task", headers={"Authorization": f"Bearer {alice}"}).status_code == 403
    assert client.get("/api/admin", headers={"Authorization": f"Bearer {admin}"}).status_code == 200
    store.close()
    assert main(["annotate", "revoke-annotator", "--study", str(study), "nobody"]) == 2
    assert "nobody named 'nobody'" in capsys.readouterr().err
