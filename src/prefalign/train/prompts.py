"""The compositional prompt family of Lee et al. and the perturbations of its prompts.

Lee et al. collect feedback on prompts that name objects with a count, a colour and a
background, alone and combined ("two dogs", "a green dog", "a dog in the forest", "two green
dogs in the forest"). Their reward model's auxiliary loss asks which prompt produced a good
image among the true prompt and perturbations of it that change its meaning: another count,
colour, object or background. A family is data (word lists), so tests and users can swap in
their own vocabulary.
"""

from __future__ import annotations

import functools
import itertools
import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from prefalign.errors import PrefalignError

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
CATEGORIES = ("count", "colour", "background", "combined")


class PromptFamilyError(PrefalignError, ValueError):
    """A prompt family that cannot be used (empty or overlapping word lists, bad counts)."""


@dataclass(frozen=True)
class CompositionalFamily:
    """Word lists of a compositional prompt family.

    The defaults follow the paper's categories and kinds of words (common objects, basic
    colours, places); counts run from one to six. Backgrounds are whole phrases, so a family can
    say "on a white background" as well as "in the forest".
    """

    objects: tuple[str, ...] = ("dog", "cat", "lion", "orange", "vase", "muffin", "cup", "apple")
    colours: tuple[str, ...] = ("red", "yellow", "green", "blue", "black", "pink", "purple", "white", "brown")
    backgrounds: tuple[str, ...] = (
        "in the forest",
        "in the city",
        "on the moon",
        "in a field",
        "in the sea",
        "on a table",
        "in the desert",
        "in San Francisco",
    )
    counts: tuple[int, ...] = (1, 2, 3, 4, 5, 6)

    def __post_init__(self) -> None:
        for name in ("objects", "colours", "backgrounds", "counts"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if not self.objects:
            raise PromptFamilyError("a prompt family needs at least one object")
        if not self.counts or any(not 1 <= c < len(NUMBER_WORDS) for c in self.counts):
            raise PromptFamilyError(
                f"counts must be between 1 and {len(NUMBER_WORDS) - 1}, got {self.counts}"
            )
        words = [w.casefold() for w in (*self.objects, *self.colours, *self.backgrounds)]
        if len(set(words)) != len(words):
            raise PromptFamilyError("objects, colours and backgrounds must be distinct words")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CompositionalFamily:
        unknown = set(d) - {"objects", "colours", "backgrounds", "counts"}
        if unknown:
            raise PromptFamilyError(f"unknown prompt-family keys {sorted(unknown)}")
        return cls(**d)

    @classmethod
    def from_yaml(cls, path: str | Path) -> CompositionalFamily:
        import yaml

        try:
            d = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise PromptFamilyError(f"{path}: cannot read the prompt family ({exc})") from None
        if not isinstance(d, dict):
            raise PromptFamilyError(f"{path}: expected a mapping with objects, colours, backgrounds, counts")
        return cls.from_dict(d)

    def to_dict(self) -> dict[str, list]:
        return {k: list(v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class CompositionalPrompt:
    """One prompt of a family: an object with an optional count, colour and background.

    ``count=None`` means unspecified ("a dog"), which reads as one.
    """

    object: str
    count: int | None = None
    colour: str | None = None
    background: str | None = None
    category: str = field(default="", compare=False)

    @property
    def text(self) -> str:
        """The prompt as a sentence: "two green dogs in the forest", "an orange"."""
        noun = self.object if (self.count or 1) == 1 else plural(self.object)
        phrase = f"{self.colour} {noun}" if self.colour else noun
        if self.count is None:
            phrase = f"{article(phrase)} {phrase}"
        else:
            phrase = f"{NUMBER_WORDS[self.count]} {phrase}"
        return f"{phrase} {self.background}" if self.background else phrase

    def __str__(self) -> str:
        return self.text


def plural(noun: str) -> str:
    """English plural of a regular noun (dogs, glasses, berries)."""
    if noun.endswith(("s", "x", "z", "ch", "sh")):
        return noun + "es"
    if len(noun) > 1 and noun.endswith("y") and noun[-2] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


def article(phrase: str) -> str:
    return "an" if phrase[:1].lower() in "aeiou" else "a"


def compositional_prompts(
    family: CompositionalFamily | None = None, categories: Sequence[str] = CATEGORIES
) -> Iterator[CompositionalPrompt]:
    """Every prompt of the family, category by category.

    ``count``: each object at each count ("three cats"); ``colour``: each object in each colour
    ("a green cat"); ``background``: each object on each background ("a cat in the city");
    ``combined``: every count × colour × object × background ("three green cats in the city").
    """
    family = family or CompositionalFamily()
    unknown = set(categories) - set(CATEGORIES)
    if unknown:
        raise PromptFamilyError(f"unknown categories {sorted(unknown)}; expected some of {CATEGORIES}")
    f = family
    for category in categories:
        if category == "count":
            combos = ((o, c, None, None) for o in f.objects for c in f.counts)
        elif category == "colour":
            combos = ((o, None, col, None) for o in f.objects for col in f.colours)
        elif category == "background":
            combos = ((o, None, None, b) for o in f.objects for b in f.backgrounds)
        else:
            combos = (
                (o, c, col, b)
                for c, col, o, b in itertools.product(f.counts, f.colours, f.objects, f.backgrounds)
            )
        for o, c, col, b in combos:
            yield CompositionalPrompt(o, c, col, b, category=category)


class PromptParser:
    """Reads prompts of a family back into their parts (None for prompts outside it)."""

    def __init__(self, family: CompositionalFamily):
        self.family = family

        def alternation(words: Sequence[str]) -> str:
            return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))

        numbers = ["a", "an", *(NUMBER_WORDS[c] for c in range(1, len(NUMBER_WORDS)))]
        self._objects = {o.casefold(): o for o in family.objects}
        self._objects.update({plural(o).casefold(): o for o in family.objects})
        self._colours = {c.casefold(): c for c in family.colours}
        self._backgrounds = {b.casefold(): b for b in family.backgrounds}
        pattern = (
            rf"^(?:(?P<count>{alternation(numbers)})\s+)?"
            rf"(?:(?P<colour>{alternation(self._colours)})\s+)?"
            rf"(?P<object>{alternation(self._objects)})"
            rf"(?:\s+(?P<background>{alternation(self._backgrounds)}))?$"
        )
        self._regex = re.compile(pattern, re.IGNORECASE)

    def parse(self, text: str) -> CompositionalPrompt | None:
        """Parse "Two green dogs in the forest." (case, spacing and a final full stop are free)."""
        normalised = " ".join(text.strip().rstrip(".").split())
        m = self._regex.match(normalised)
        if m is None:
            return None
        count_word = (m["count"] or "").casefold()
        count = None if count_word in ("", "a", "an") else NUMBER_WORDS.index(count_word)
        return CompositionalPrompt(
            object=self._objects[m["object"].casefold()],
            count=count,
            colour=self._colours[m["colour"].casefold()] if m["colour"] else None,
            background=self._backgrounds[m["background"].casefold()] if m["background"] else None,
        )


@functools.lru_cache(maxsize=8)
def parser_for(family: CompositionalFamily) -> PromptParser:
    """A (cached) parser of ``family``'s prompts."""
    return PromptParser(family)


def perturbations(prompt: CompositionalPrompt, family: CompositionalFamily) -> list[CompositionalPrompt]:
    """Every prompt that differs from ``prompt`` in exactly one of its parts, changing its meaning.

    The count and the object always exist ("a dog" is one dog); a colour or a background is
    replaced only when the prompt names one (adding one would not contradict the image).
    """
    count = prompt.count or 1
    out = [replace(prompt, count=c) for c in family.counts if c != count]
    out += [replace(prompt, object=o) for o in family.objects if o != prompt.object]
    if prompt.colour is not None:
        out += [replace(prompt, colour=c) for c in family.colours if c != prompt.colour]
    if prompt.background is not None:
        out += [replace(prompt, background=b) for b in family.backgrounds if b != prompt.background]
    return out


def perturb_prompt(
    text: str, n: int, *, family: CompositionalFamily | None = None, rng: random.Random | None = None
) -> list[str] | None:
    """Up to ``n`` distinct perturbations of a prompt, each changing one part of its meaning.

    Args:
        text: a prompt of the family.
        n: how many perturbations (``N − 1`` in the paper's notation).
        family: the word lists (default: the built-in family).
        rng: the source of randomness (default: a fresh ``random.Random(0)``).

    Returns:
        The perturbed prompts (fewer than ``n`` only when the family has fewer), or None when
        ``text`` is not a prompt of the family.

    Example:
        >>> perturb_prompt("two green dogs in the forest", 2, rng=random.Random(1))  # doctest: +SKIP
        ['two green dogs on the moon', 'five green dogs in the forest']
    """
    family = family or CompositionalFamily()
    parsed = parser_for(family).parse(text)
    if parsed is None:
        return None
    options = perturbations(parsed, family)
    rng = rng or random.Random(0)
    return [p.text for p in rng.sample(options, min(n, len(options)))]
