"""The compositional prompt family and its perturbations."""

import random
from dataclasses import fields

import pytest

from prefalign.train.prompts import (
    CompositionalFamily,
    CompositionalPrompt,
    PromptFamilyError,
    PromptParser,
    compositional_prompts,
    perturb_prompt,
    perturbations,
)

PARTS = ("object", "count", "colour", "background")


def test_family_enumerates_each_category_alone_and_combined():
    f = CompositionalFamily()
    prompts = list(compositional_prompts(f))
    by_category = {
        c: [p for p in prompts if p.category == c] for c in ("count", "colour", "background", "combined")
    }
    assert len(by_category["count"]) == len(f.objects) * 6 and f.counts == (1, 2, 3, 4, 5, 6)
    assert len(by_category["colour"]) == len(f.objects) * len(f.colours)
    assert len(by_category["background"]) == len(f.objects) * len(f.backgrounds)
    assert len(by_category["combined"]) == 6 * len(f.objects) * len(f.colours) * len(f.backgrounds)
    assert len({p.text for p in prompts}) == len(prompts)


@pytest.mark.parametrize(
    "prompt, text",
    [
        (
            CompositionalPrompt("dog", count=2, colour="green", background="in the forest"),
            "two green dogs in the forest",
        ),
        (CompositionalPrompt("orange"), "an orange"),
        (CompositionalPrompt("orange", colour="red"), "a red orange"),
        (CompositionalPrompt("glass", count=3), "three glasses"),
        (CompositionalPrompt("cat", count=1), "one cat"),
    ],
)
def test_prompt_text(prompt, text):
    assert prompt.text == text


def test_every_prompt_of_the_family_parses_back():
    f = CompositionalFamily()
    parser = PromptParser(f)
    for p in compositional_prompts(f):
        assert parser.parse(p.text) == p
    assert parser.parse("Two Green dogs   in the forest.") == CompositionalPrompt(
        "dog", 2, "green", "in the forest"
    )
    assert parser.parse("a purple cow") is None


def test_perturbations_change_exactly_one_part():
    f = CompositionalFamily()
    original = CompositionalPrompt("dog", count=2, colour="green", background="in the forest")
    options = perturbations(original, f)
    assert len(options) == (6 - 1) + (len(f.objects) - 1) + (len(f.colours) - 1) + (len(f.backgrounds) - 1)
    for p in options:
        changed = [name for name in PARTS if getattr(p, name) != getattr(original, name)]
        assert len(changed) == 1 and p.text != original.text


def test_perturbations_never_add_a_colour_or_background():
    options = perturbations(CompositionalPrompt("dog"), CompositionalFamily())
    assert all(p.colour is None and p.background is None for p in options)
    assert {p.count for p in options} - {None} == {2, 3, 4, 5, 6}  # "a dog" is one dog


def test_perturb_prompt_is_seeded_distinct_and_capped():
    text = "two green dogs in the forest"
    a = perturb_prompt(text, 5, rng=random.Random(3))
    assert a == perturb_prompt(text, 5, rng=random.Random(3))
    assert len(a) == len(set(a)) == 5 and text not in a
    small = CompositionalFamily(objects=("circle", "square"), colours=("red",), backgrounds=(), counts=(1,))
    assert perturb_prompt("a red circle", 10, family=small) == ["a red square"]
    assert perturb_prompt("a purple cow", 3) is None


def test_family_rejects_unusable_word_lists(tmp_path):
    with pytest.raises(PromptFamilyError):
        CompositionalFamily(objects=())
    with pytest.raises(PromptFamilyError):
        CompositionalFamily(counts=(0, 2))
    with pytest.raises(PromptFamilyError):
        CompositionalFamily(objects=("red",), colours=("red",))
    path = tmp_path / "family.yaml"
    path.write_text("objects: [cat]\nshapes: [x]\n")
    with pytest.raises(PromptFamilyError, match="shapes"):
        CompositionalFamily.from_yaml(path)
    path.write_text("objects: [cat, dog]\ncolours: [red]\nbackgrounds: []\ncounts: [1, 2]\n")
    assert CompositionalFamily.from_yaml(path) == CompositionalFamily(("cat", "dog"), ("red",), (), (1, 2))
    assert {f.name for f in fields(CompositionalFamily)} == {"objects", "colours", "backgrounds", "counts"}
