"""Journey 3 of issue 15: an A/B study of two folders, from create-study to results, through the CLI.

Three annotators vote through the API test client as a person would: they look at the two served
images (A's are red, B's blue) and click one. The reported share for B must equal the votes cast.
"""

from __future__ import annotations

import io
import json
import math
import re
from pathlib import Path

import pytest
from PIL import Image

from prefalign.cli.main import main
from prefalign.data.dataset import Record, save_dataset

RED, BLUE = (220, 30, 30), (30, 30, 220)
BASE_URL = "https://annotate.example.org"


def generated_set(root: Path, colour: tuple, prompts: list[str], seeds: list[int], *, reverse: bool) -> Path:
    """A `generate`-like output: one record per (prompt, seed) with meta['seed'], in some order."""
    (root / "images").mkdir(parents=True)
    records = []
    keys = [(p, s) for p in prompts for s in seeds]
    for n, (prompt, seed) in enumerate(reversed(keys) if reverse else keys):
        name = f"images/{n:05d}.png"
        Image.new("RGB", (16, 16), colour).save(root / name)
        records.append(Record(id=f"{n}", prompt=prompt, images=[name], meta={"seed": seed}))
    save_dataset(records, root)
    return root


def colour_of(png: bytes) -> str:
    r, _, b = Image.open(io.BytesIO(png)).convert("RGB").getpixel((0, 0))
    return "A" if r > b else "B"


def cli(capsys, *argv: str) -> str:
    code = main(list(argv))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


@pytest.fixture
def two_sets(tmp_path):
    prompts = ["a red fox in snow", "a lighthouse at dusk"]
    seeds = [1, 2, 3]
    # B lists its images in the opposite order and under other file names: pairing is by prompt
    # and seed, not by position or name.
    a = generated_set(tmp_path / "base", RED, prompts, seeds, reverse=False)
    b = generated_set(tmp_path / "adapted", BLUE, prompts, seeds, reverse=True)
    return a, b


def test_ab_study_of_two_generated_sets_end_to_end(tmp_path, two_sets, capsys):
    from fastapi.testclient import TestClient

    from prefalign.annotate import Store, create_app

    a, b = two_sets
    study = tmp_path / "ab"
    out = cli(
        capsys,
        "annotate", "create-study", "--study", str(study), "--kind", "pair", "--a", str(a), "--b", str(b),
        "--annotators-per-task", "3", "--base-url", BASE_URL,
    )  # fmt: skip
    assert "paired 6 images of --a with --b by prompt and seed" in out
    assert f"{BASE_URL}/invite/" in out
    # --base-url given once: add-annotator's links use it without being told again.
    out = cli(capsys, "annotate", "add-annotator", "--study", str(study), "p1", "p2", "p3")
    links = dict(line.split("\t") for line in out.strip().splitlines())
    assert all(link.startswith(f"{BASE_URL}/invite/") for link in links.values())
    tokens = {name: link.rsplit("/", 1)[1] for name, link in links.items()}

    store = Store.open(study / "annotations.db")
    try:
        client = TestClient(create_app(store, study), base_url=BASE_URL)
        # p1 always picks B, p2 picks B on its first two tasks only, p3 always picks A.
        wants = {"p1": lambda k: "B", "p2": lambda k: "B" if k < 2 else "A", "p3": lambda k: "A"}
        cast = {"A": 0, "B": 0}
        left_votes = 0
        b_positions = []
        for name, token in tokens.items():
            headers = {"Authorization": f"Bearer {token}"}
            page = client.get("/", headers=headers).text
            for hidden in ("base", "adapted", str(a), str(b), "00000.png", "seed"):
                assert hidden not in page, f"{hidden!r} is visible on the annotator's page"
            for k in range(6):
                task = client.get("/api/task", headers=headers).json()["task"]
                assert task is not None
                assert set(task) == {"id", "prompt", "images"}
                assert all(re.fullmatch(r"/image/\d+/[01]", url) for url in task["images"])
                sides = [colour_of(client.get(url, headers=headers).content) for url in task["images"]]
                assert sorted(sides) == ["A", "B"]
                b_positions.append(sides.index("B"))
                want = wants[name](k)
                position = sides.index(want)
                left_votes += position == 0
                response = client.post(
                    "/api/vote", json={"task": task["id"], "answer": str(position)}, headers=headers
                )
                assert response.json()["status"] == "recorded", response.text
                cast[want] += 1
            assert client.get("/api/task", headers=headers).json()["task"] is None
    finally:
        store.close()

    assert cast == {"A": 10, "B": 8}
    # Left/right is drawn per annotator and task: B is not always on one side (p = 2^-17 by chance).
    assert set(b_positions) == {0, 1}
    out = cli(capsys, "annotate", "results", "--study", str(study), "--out", str(tmp_path / "results"))
    assert "A = base, B = adapted; 18 votes by 3 participant(s)" in out
    report = json.loads((tmp_path / "results" / "report.json").read_text())
    overall = report["overall"]
    assert (overall["votes_a"], overall["votes_b"], overall["votes"]) == (10, 8, 18)
    assert overall["share_b"] == pytest.approx(8 / 18)
    assert overall["ci_low"] < 8 / 18 < overall["ci_high"]
    assert report["interval"] == "wilson-95"
    assert overall["sign_test_p"] == pytest.approx(0.8145, abs=1e-4)  # scipy binomtest(8, 18)
    assert sum(p["votes"] for p in report["per_prompt"].values()) == 18
    assert set(report["per_prompt"]) == {"a red fox in snow", "a lighthouse at dusk"}
    assert report["participants"] == 3 and report["left_votes"] == 18
    assert report["left_share"] == pytest.approx(left_votes / 18)
    agreement = report["agreement"]
    assert agreement["items"] == 6
    assert 0 <= agreement["pairwise"] <= 1 and math.isfinite(agreement["fleiss_kappa"])
    html = (tmp_path / "results" / "report.html").read_text()
    assert "data:image/png;base64," in html and "Wilson" in html
    # A second run refuses to overwrite the report unless asked.
    assert main(["annotate", "results", "--study", str(study), "--out", str(tmp_path / "results")]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_two_plain_folders_pair_by_file_name_with_caption_files(tmp_path, capsys):
    for side, colour in (("left-model", RED), ("right-model", BLUE)):
        (tmp_path / side).mkdir()
        for name in ("cat", "dog"):
            Image.new("RGB", (8, 8), colour).save(tmp_path / side / f"{name}.png")
    (tmp_path / "left-model" / "cat.txt").write_text("a cat on a mat\n")
    study = tmp_path / "study"
    out = cli(
        capsys, "annotate", "create-study", "--study", str(study), "--kind", "pair",
        "--a", str(tmp_path / "left-model"), "--b", str(tmp_path / "right-model"),
    )  # fmt: skip
    assert "paired 2 images of --a with --b by file name; 1 without a prompt" in out
    from prefalign.data.dataset import load_dataset

    records = {r.prompt: r for r in load_dataset(study)}
    assert set(records) == {"a cat on a mat", ""}
    for record in records.values():
        # A first in the record (what export and results read), under names that hide the side.
        assert Path(record.meta["a"]).parent.name == "left-model"
        assert Path(record.meta["b"]).parent.name == "right-model"
        assert not any(word in image for image in record.images for word in ("left", "right", "cat", "dog"))
    config = json.loads((study / "study.json").read_text())
    assert config["sides"]["matched_by"] == "file name" and config["base_url"] == ""


def test_sets_that_do_not_pair_up_are_refused_and_nothing_is_written(tmp_path, capsys):
    for side, names in (("a", ("x", "y")), ("b", ("x", "z"))):
        (tmp_path / side).mkdir()
        for name in names:
            Image.new("RGB", (8, 8), RED).save(tmp_path / side / f"{name}.png")
    study = tmp_path / "study"
    code = main(
        [
            "annotate",
            "create-study",
            "--study",
            str(study),
            "--kind",
            "pair",
            "--a",
            str(tmp_path / "a"),
            "--b",
            str(tmp_path / "b"),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "do not pair up by file name: 1 only in A, e.g. 'y.png'; 1 only in B, e.g. 'z.png'" in err
    assert not study.exists()


def test_serve_uses_the_stored_base_url(tmp_path, two_sets, capsys, monkeypatch):
    """serve without --base-url checks origins against the address create-study was given."""
    import uvicorn

    a, b = two_sets
    study = tmp_path / "ab"
    cli(
        capsys,
        "annotate",
        "create-study",
        "--study",
        str(study),
        "--kind",
        "pair",
        "--a",
        str(a),
        "--b",
        str(b),
        "--base-url",
        BASE_URL,
    )
    seen = {}

    def fake_run(app, **kwargs):
        seen["app"] = app

    monkeypatch.setattr(uvicorn, "run", fake_run)
    cli(capsys, "annotate", "serve", "--study", str(study))
    from fastapi.testclient import TestClient

    token = cli(capsys, "annotate", "add-annotator", "--study", str(study), "p1").split("/invite/")[1].strip()
    client = TestClient(seen["app"], base_url="http://127.0.0.1:8000", follow_redirects=False)
    headers = {"Authorization": f"Bearer {token}"}
    task = client.get("/api/task", headers=headers).json()["task"]
    form = {"task": str(task["id"]), "answer": "0"}
    # A form post from the local address is cross-site for a study served at BASE_URL.
    refused = client.post("/vote", data=form, headers={**headers, "Origin": "http://127.0.0.1:8000"})
    assert refused.status_code == 403
    accepted = client.post("/vote", data=form, headers={**headers, "Origin": BASE_URL})
    assert accepted.status_code == 303, accepted.text


def test_results_of_any_pair_study_count_images_1_as_b(tmp_path, capsys):
    """A pair study made with --from (no seeds, no --a/--b): B is images[1] of each record."""
    from fastapi.testclient import TestClient

    from prefalign.annotate import Store, create_app

    from .conftest import write_dataset

    source = write_dataset(tmp_path / "pairs", 3, 2)  # images[j] has green channel 90 * j
    study = tmp_path / "study"
    cli(capsys, "annotate", "create-study", "--study", str(study), "--from", str(source), "--kind", "pair")
    token = (
        cli(capsys, "annotate", "add-annotator", "--study", str(study), "solo").split("/invite/")[1].strip()
    )
    store = Store.open(study / "annotations.db")
    try:
        client = TestClient(create_app(store, study))
        headers = {"Authorization": f"Bearer {token}"}
        for _ in range(3):  # always the second image of the record
            task = client.get("/api/task", headers=headers).json()["task"]
            greens = [
                Image.open(io.BytesIO(client.get(u, headers=headers).content)).getpixel((0, 0))[1]
                for u in task["images"]
            ]
            client.post(
                "/api/vote", json={"task": task["id"], "answer": str(greens.index(90))}, headers=headers
            )
    finally:
        store.close()
    out = cli(capsys, "annotate", "results", "--study", str(study))
    assert "A = images[0], B = images[1]; 3 votes by 1 participant(s)" in out
    report = json.loads((study / "results" / "report.json").read_text())
    assert report["overall"]["votes_b"] == 3 and report["overall"]["share_b"] == 1.0
    assert report["agreement"] is None  # one person: nobody to agree with


def test_a_without_b_or_into_a_used_directory_is_refused(tmp_path, capsys):
    (tmp_path / "a").mkdir()
    Image.new("RGB", (8, 8), RED).save(tmp_path / "a" / "x.png")
    study = tmp_path / "study"
    assert (
        main(
            ["annotate", "create-study", "--study", str(study), "--kind", "pair", "--a", str(tmp_path / "a")]
        )
        == 2
    )
    assert "--a and --b go together" in capsys.readouterr().err
    study.mkdir()
    (study / "notes.txt").write_text("mine")
    argv = ["annotate", "create-study", "--study", str(study), "--kind", "pair", "--a", str(tmp_path / "a")]
    assert main([*argv, "--b", str(tmp_path / "a")]) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    assert sorted(p.name for p in study.iterdir()) == ["notes.txt"]
