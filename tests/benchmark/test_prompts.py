"""Prompt sets: the shipped PartiPrompts and compositional sets, user files, deterministic subsets."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from prefalign.benchmark.prompts import PromptSetError, load_prompt_set


def test_parti_is_shipped_whole_with_categories_and_challenges():
    ps = load_prompt_set("parti")
    assert ps.total == len(ps.prompts) == 1632
    assert len(ps.categories()) == 12
    counts = Counter(p.category for p in ps.prompts)
    assert counts["Animals"] == 314 and counts["Indoor Scenes"] == 40
    assert Counter(p.challenge for p in ps.prompts)["Writing & Symbols"] == 91
    assert ps.prompts[0].text == "bond" and ps.prompts[0].index == 0
    # The TSV quotes nothing: a prompt that starts with a quotation mark keeps it.
    assert any(p.text.startswith('"G I G G L E" painted') for p in ps.prompts)
    assert "Apache-2.0" in ps.license and "google-research/parti" in ps.source
    from importlib import resources

    data = resources.files("prefalign.benchmark") / "data"
    assert "Apache License" in (data / "PartiPrompts.LICENSE").read_text(encoding="utf-8")
    assert "google-research/parti" in (data / "NOTICE").read_text(encoding="utf-8")


def test_limit_takes_every_category_round_robin_and_keeps_indices():
    full = load_prompt_set("parti")
    a = load_prompt_set("parti", limit=24)
    b = load_prompt_set("parti", limit=24)
    assert [p.index for p in a.prompts] == [p.index for p in b.prompts]  # deterministic
    assert len(a.prompts) == 24
    assert Counter(p.category for p in a.prompts) == {c: 2 for c in full.categories()}
    for p in a.prompts:  # each prompt keeps its index in the full set (it names the images)
        assert full.prompts[p.index].text == p.text
    # A larger limit contains the smaller one, so its images are reused.
    assert {p.index for p in a.prompts} <= {p.index for p in load_prompt_set("parti", limit=60).prompts}


def test_categories_filter_is_case_insensitive_and_unknown_ones_are_named():
    ps = load_prompt_set("parti", categories=["indoor scenes", "Arts"], limit=10)
    assert {p.category for p in ps.prompts} == {"Indoor Scenes", "Arts"}
    assert len(ps.prompts) == 10
    with pytest.raises(PromptSetError, match=r"unknown categories \['Animal'\].*Animals"):
        load_prompt_set("parti", categories=["Animal"])
    with pytest.raises(PromptSetError, match="at least 1"):
        load_prompt_set("parti", limit=0)


def test_lee_compositional_set_has_its_four_categories():
    ps = load_prompt_set("lee-compositional")
    assert ps.categories() == ["count", "colour", "background", "combined"]
    assert ps.prompts[0].category == "count"


def test_user_files_txt_csv_jsonl(tmp_path):
    txt = tmp_path / "p.txt"
    txt.write_text("# my prompts\na red circle\n\na blue square\n", encoding="utf-8")
    assert [p.text for p in load_prompt_set(txt).prompts] == ["a red circle", "a blue square"]
    csv = tmp_path / "p.csv"
    csv.write_text(
        'prompt,category\n"a cat, sitting",animals\na dog,animals\na cup,things\n', encoding="utf-8"
    )
    ps = load_prompt_set(csv)
    assert ps.prompts[0].text == "a cat, sitting" and ps.categories() == ["animals", "things"]
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text(
        "\n".join(json.dumps({"prompt": t, "category": c}) for t, c in [("a", "x"), ("b", None)]) + "\n"
    )
    ps = load_prompt_set(jsonl)
    assert [(p.text, p.category) for p in ps.prompts] == [("a", "x"), ("b", None)]


def test_bad_files_say_which_file_and_what_to_do(tmp_path):
    with pytest.raises(PromptSetError, match=r"no such prompt file.*parti"):
        load_prompt_set(tmp_path / "missing.txt")
    bad = tmp_path / "bad.csv"
    bad.write_text("text,category\na cat,x\n", encoding="utf-8")
    with pytest.raises(PromptSetError, match=re.escape(f"{bad}: no 'prompt' column")):
        load_prompt_set(bad)
    empty = tmp_path / "empty.tsv"
    empty.write_text("prompt\n \n", encoding="utf-8")
    with pytest.raises(PromptSetError, match="row 1 has an empty prompt"):
        load_prompt_set(empty)
    yaml = tmp_path / "p.yaml"
    yaml.write_text("prompt: x\n", encoding="utf-8")
    with pytest.raises(PromptSetError, match=re.escape("end in .txt, .tsv, .csv, .jsonl")):
        load_prompt_set(yaml)
