"""The grammar of the Stable Foundation "dreambot" interaction, in one place.

The HPS paper mined its choices from this exchange (other bots and servers differ: adapt a
:class:`DreamGrammar` rather than the miner):

1. A user sends a request::

       !dream "PROMPT" -n 4 -S 1234 -C 7.5 -s 50 -A k_lms -W 512 -H 512 -g

   The prompt is in double quotes (``\\"`` escapes a quote inside; phone keyboards' curly
   quotes work too) or, unquoted, runs up to the first flag. Flags: ``-n`` count, ``-S`` seed,
   ``-C`` guidance scale, ``-s`` steps, ``-A`` sampler, ``-W``/``-H`` size, ``-g`` grid, and
   ``-I``/``--init_img`` an input image. Long spellings (``--seed 5``, ``--seed=5``) and glued
   short ones (``-S5``) are accepted.
2. The bot (an author with ``isBot``) replies to the request with the images: one attachment per
   image, or one grid image of n cells (:data:`GRID_LAYOUTS`, row-major). It names the seeds,
   either ``The seeds for each individual image are [s1, s2, ...]`` or one
   ``!dream ... -S s_k`` command per image (one per line, or inline in backticks after
   ``The commands for each individual image are``). Images it judges NSFW come spoilered
   (``SPOILER_`` file names).
3. The user picks one image: a new request with the same prompt and ``-S s_k``, or a reply to
   the bot's message carrying the chosen image (its file, or its URL in the text).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

# Cells of a grid image for each image count, as (columns, rows); cells are read row-major.
GRID_LAYOUTS: dict[int, tuple[int, int]] = {
    2: (2, 1),
    3: (3, 1),
    4: (2, 2),
    6: (3, 2),
    8: (4, 2),
    9: (3, 3),
}

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp")

# Opening quote -> closing quote. Curly quotes come from phone keyboards' "smart punctuation".
_QUOTES = {'"': '"', "\u201c": "\u201d", "\u201e": "\u201c"}
# A straight-quoted prompt, in which a backslash escapes a quote or a backslash.
# (Written as an unrolled loop: an alternation per character is several times slower.)
_QUOTED = re.compile(r'"([^"\\]*(?:\\.[^"\\]*)*)"', re.DOTALL)
_UNESCAPE = re.compile(r'\\(["\\])')
_FLAG_START = re.compile(r"(?:^|\s)(--?[A-Za-z])")
_URL = re.compile(r"https?://\S+")


@dataclass
class DreamRequest:
    """One parsed ``!dream`` command."""

    prompt: str
    count: int | None = None
    seed: int | None = None
    init_image: bool = False
    grid: bool = False
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class DreamGrammar:
    """How requests, seeds and NSFW marks are written. The defaults are dreambot's.

    Attributes:
        command: the word that starts a request (compared case-insensitively).
        flags: option spelling -> parameter name. ``count``, ``seed`` and ``init_image`` drive
            the mining; the others are kept in the record's meta.
        boolean_flags: option spellings that take no value, -> parameter name.
        seeds_pattern: finds the bracketed seed list in the bot's text.
        commands_header_pattern: the header after which the bot writes one command per image
            (commands before it, such as the echoed request, name no image).
        nsfw_prefix: the file-name prefix of spoilered attachments.
        bot_names: if set, only bot authors with these names (or ids) count as the generator.
    """

    command: str = "!dream"
    flags: dict[str, str] = field(
        default_factory=lambda: {
            "-n": "count",
            "--n_samples": "count",
            "--num": "count",
            "-S": "seed",
            "--seed": "seed",
            "-C": "cfg_scale",
            "--cfg_scale": "cfg_scale",
            "--cfg-scale": "cfg_scale",
            "-s": "steps",
            "--steps": "steps",
            "-A": "sampler",
            "--sampler": "sampler",
            "-W": "width",
            "--width": "width",
            "-H": "height",
            "--height": "height",
            "-I": "init_image",
            "--init_img": "init_image",
            "--init-img": "init_image",
            "--init_image": "init_image",
            "--init-image": "init_image",
        }
    )
    boolean_flags: dict[str, str] = field(default_factory=lambda: {"-g": "grid", "--grid": "grid"})
    seeds_pattern: str = r"seeds? for each (?:individual )?image (?:are|is)\s*:?\s*\[([-\d,\s]*)\]"
    commands_header_pattern: str = r"commands? for each (?:individual )?image (?:are|is)\s*:?"
    nsfw_prefix: str = "SPOILER_"
    bot_names: frozenset[str] | None = None

    def __post_init__(self) -> None:
        self._seeds_re = re.compile(self.seeds_pattern, re.IGNORECASE)
        self._command_re = re.compile(r"^\s*" + re.escape(self.command) + r"(?=\s|$)", re.IGNORECASE)
        self._command_any_re = re.compile(r"(?<!\S)" + re.escape(self.command) + r"(?=\s|$)", re.IGNORECASE)
        self._commands_header_re = re.compile(self.commands_header_pattern, re.IGNORECASE)

    # ----- requests -------------------------------------------------------------------------

    def is_request(self, content: str) -> bool:
        """Whether a message's text starts with the command (cheap; no full parse)."""
        return bool(content) and self._command_re.match(content) is not None

    def parse_request(self, content: str) -> DreamRequest | None:
        """Parse a request's text, or None if it is not a request or has no prompt."""
        m = self._command_re.match(content or "")
        if not m:
            return None
        rest = content[m.end() :].strip()
        prompt, rest = _split_prompt(rest)
        prompt = normalize_prompt(prompt)
        if not prompt:
            return None
        req = DreamRequest(prompt=prompt)
        tokens = rest.split()
        i = 0
        while i < len(tokens):
            name, value, used = self._flag_at(tokens, i)
            i += used
            if name is None:
                continue
            if name == "init_image":
                req.init_image = True
            elif name == "grid":
                req.grid = True
            elif name == "count":
                req.count = _to_int(value)
            elif name == "seed":
                req.seed = _to_int(value)
            else:
                req.params[name] = _to_number(value)
        return req

    def _flag_at(self, tokens: list[str], i: int) -> tuple[str | None, str | None, int]:
        """(parameter, value, tokens consumed) for the flag at ``tokens[i]``."""
        tok = tokens[i]
        if tok in self.boolean_flags:
            return self.boolean_flags[tok], None, 1
        if "=" in tok and tok.split("=", 1)[0] in self.flags:
            key, value = tok.split("=", 1)
            return self.flags[key], value, 1
        if tok in self.flags:
            value = tokens[i + 1] if i + 1 < len(tokens) else None
            return self.flags[tok], value, 2 if value is not None else 1
        # Glued short option: -S1234 (only single-letter options glue)
        if len(tok) > 2 and tok[0] == "-" and tok[1] != "-" and tok[:2] in self.flags:
            return self.flags[tok[:2]], tok[2:], 1
        return None, None, 1

    # ----- the bot's reply ------------------------------------------------------------------

    def parse_seeds(self, content: str) -> list[int] | None:
        """The seeds the bot names for its images, in image order, or None if it names none."""
        if not content:
            return None
        m = self._seeds_re.search(content)
        if m:
            seeds = [_to_int(s) for s in m.group(1).split(",") if s.strip()]
            return [s for s in seeds if s is not None] or None
        # One command per image, wherever written: one per line, or inline, each in backticks
        # (`!dream "P" -S 11` `!dream "P" -S 12`). After a header ("The commands for each
        # individual image are") only the commands after it count: before it the bot may echo
        # the request itself, whose seed names no single image.
        header = self._commands_header_re.search(content)
        text = content[header.end() :] if header else content
        seeds = []
        for piece in self.command_texts(text):
            req = self.parse_request(piece)
            if req is not None and req.seed is not None:
                seeds.append(req.seed)
        return seeds or None

    def command_texts(self, content: str) -> list[str]:
        """Every command occurrence in a text, in order, each cut at the next one, a backtick or
        the end of its line."""
        out = []
        for piece in re.split(r"[`\n]", content):
            starts = [m.start() for m in self._command_any_re.finditer(piece)]
            for a, b in zip(starts, [*starts[1:], len(piece)]):
                out.append(piece[a:b])
        return out

    def is_generator(self, author: dict[str, Any]) -> bool:
        """Whether a message author is the bot that answers requests."""
        if not author.get("isBot"):
            return False
        if self.bot_names is None:
            return True
        return bool({str(author.get("name")), str(author.get("id"))} & self.bot_names)

    def is_nsfw(self, attachment: dict[str, Any]) -> bool:
        """Whether the bot spoilered an image (its mark for NSFW)."""
        return str(attachment.get("fileName") or "").startswith(self.nsfw_prefix)


def is_image_attachment(attachment: dict[str, Any]) -> bool:
    """Whether an attachment is an image, judged by its file name (or URL)."""
    name = str(attachment.get("fileName") or urlsplit(str(attachment.get("url") or "")).path)
    return name.lower().endswith(IMAGE_EXTENSIONS)


def normalize_prompt(prompt: str) -> str:
    """Collapse whitespace so that the same prompt typed twice compares equal."""
    return " ".join(prompt.split())


def find_urls(content: str) -> list[str]:
    """URLs in a message's text."""
    return _URL.findall(content or "")


def url_key(url: str) -> str:
    """A URL without query or fragment, so that signed or resized CDN variants compare equal."""
    parts = urlsplit(url.strip("<>"))
    path = parts.path
    # Discord serves the same attachment from cdn.discordapp.com and media.discordapp.net.
    return path if parts.netloc.endswith(("discordapp.com", "discordapp.net")) else parts.netloc + path


def _split_prompt(rest: str) -> tuple[str, str]:
    """(prompt, text after it) for the text following the command."""
    if rest[:1] == '"' and "\\" not in rest:  # the common case, without escapes: no regex needed
        end = rest.find('"', 1)
        if end > 0:
            return rest[1:end], rest[end + 1 :]
    m = _QUOTED.match(rest)
    if m is not None:
        return _UNESCAPE.sub(r"\1", m.group(1)), rest[m.end() :]
    if rest[:1] in _QUOTES:  # curly quotes, or an unclosed straight quote (runs to the end)
        close = _QUOTES[rest[0]]
        end = rest.find(close, 1)
        return (rest[1:], "") if end < 0 else (rest[1:end], rest[end + 1 :])
    m = _FLAG_START.search(rest)
    if m is None:
        return rest, ""
    return rest[: m.start(1)], rest[m.start(1) :]


def _to_int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        try:
            return int(value.strip().rstrip(","))
        except ValueError:
            return None


def _to_number(value: str | None) -> Any:
    if value is None:
        return True
    if value.isdigit():
        return int(value)
    try:
        return float(value)
    except ValueError:
        return value
