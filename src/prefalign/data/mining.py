"""Mine human choices from DiscordChatExporter exports: ``prefalign data from-discord``.

A choice record is the prompt, the n images of the generation a user chose from, the index of
the chosen image, and the user's hashed id. The rules (see :mod:`prefalign.data.dreambot` for the
grammar of the exchange):

* A generation is the generator bot's first reply with images to a request. Requests that carry
  an input image (an attachment, or an init-image flag) are image-conditioned and dropped.
* The user chooses by a new request with the same prompt and the seed of one image, or by
  replying to the generation with one of its images (the file, or its URL). The request that
  makes a choice produces a refinement, which is not itself a generation to choose from.
* The choice must be unambiguous: two different images chosen from one generation, a reply
  naming several images or only the grid, seeds the images cannot be matched to — all skip the
  case, counted with the reason.
* Spoilered (NSFW) images are dropped; a generation keeps its other images if at least 2 remain,
  and a choice of a dropped image is skipped. Fewer images than asked are kept if n >= 2.
* Messages seen in two overlapping exports of a channel count once (Discord ids grow with time,
  so exports of one channel are read oldest first and ids inside an already-read range are
  skipped).
* State lives only for ``window_minutes`` after a message, so memory stays bounded however large
  the exports; a choice later than that is not linked.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

from prefalign.data.dataset import DatasetWriter, Record
from prefalign.data.discord import (
    SYSTEM_KINDS,
    USER_KINDS,
    DiscordExportError,
    ExportHeader,
    iter_messages,
    read_header,
    snowflake_ms,
)
from prefalign.data.dreambot import (
    GRID_LAYOUTS,
    DreamGrammar,
    DreamRequest,
    find_urls,
    is_image_attachment,
    url_key,
)
from prefalign.errors import PrefalignError
from prefalign.files import write_json_atomic

logger = logging.getLogger(__name__)

MINING_REPORT_FILE = "mining_report.json"
SOURCE = "discord"


@dataclass
class MiningReport:
    """What a mining run read, kept and dropped (written beside the records)."""

    files: list[str] = field(default_factory=list)
    messages: int = 0
    duplicate_messages: int = 0
    requests: int = 0
    generations: int = 0
    choices: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    ignored_messages: Counter[str] = field(default_factory=Counter)
    unknown_types: Counter[str] = field(default_factory=Counter)  # read like any message, counted
    local_images: int = 0  # attachments of --media exports read as local files
    missing_media: Counter[str] = field(default_factory=Counter)  # reason -> local files not copied
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["skipped"] = dict(self.skipped.most_common())
        d["ignored_messages"] = dict(self.ignored_messages.most_common())
        d["unknown_types"] = dict(self.unknown_types.most_common())
        d["missing_media"] = dict(self.missing_media.most_common())
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MiningReport:
        fields = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        fields["skipped"] = Counter(d.get("skipped") or {})
        fields["ignored_messages"] = Counter(d.get("ignored_messages") or {})
        fields["unknown_types"] = Counter(d.get("unknown_types") or {})
        fields["missing_media"] = Counter(d.get("missing_media") or {})
        return cls(**fields)


class MiningError(PrefalignError):
    """Some exports could not be read; what was mined from the rest is saved."""

    def __init__(self, report: MiningReport, out: Path):
        self.report = report
        n = len(report.errors)
        super().__init__(
            f"{report.errors[0]}"
            + (f" (and {n - 1} more errors)" if n > 1 else "")
            + f"; the {report.choices} choices mined were saved to {out}"
        )


def hash_user(user_id: str, salt: str = "") -> str:
    """A stable pseudonym for a Discord user id (16 hex digits of SHA-256)."""
    return hashlib.sha256(f"{salt}:{user_id}".encode()).hexdigest()[:16]


@dataclass
class _Request:
    message_id: str
    user: str
    ms: int
    request: DreamRequest
    refines: _Generation | None = None
    drop_reason: str | None = None


@dataclass
class _Generation:
    message_id: str
    ms: int
    req: _Request
    images: list[str]  # image references of the kept (non-NSFW) images
    names: list[str]  # file names of the kept images, for replies carrying the file
    urls: list[str]  # URLs of the kept images, for replies carrying the URL
    seeds: list[int] | None  # seeds aligned with ``images``; None if unknown or unaligned
    named_seeds: set[int]  # every seed the bot named, NSFW images' included
    nsfw_seeds: set[int]
    nsfw_refs: set[str]  # file names and URL keys of the dropped NSFW images
    grid: bool
    drop_reason: str | None
    meta: dict[str, Any]
    chosen: set[int] = field(default_factory=set)
    choice_how: str = ""
    choice_id: str = ""
    ambiguous: str | None = None


class _ChannelMiner:
    """The interaction state of one channel: pending requests and recent generations."""

    def __init__(
        self, header: ExportHeader, grammar: DreamGrammar, report: MiningReport, *, window_ms: int, salt: str
    ):
        self.header = header
        self.grammar = grammar
        self.report = report
        self.window_ms = window_ms
        self.salt = salt
        self.pending: dict[str, _Request] = {}
        self.generations: dict[str, _Generation] = {}
        self.by_key: dict[tuple[str, str], list[_Generation]] = {}
        self.export_dir = header.path.parent
        self.now = 0
        self._since_sweep = 0
        self._warned_kinds: set[str] = set()

    # ----- messages -------------------------------------------------------------------------

    def feed(self, m: dict[str, Any], path: Path) -> Iterator[Record]:
        self.now = snowflake_ms(m["id"]) or self.now
        kind = str(m.get("type") or "Default")
        if kind in SYSTEM_KINDS:
            self.report.ignored_messages["system messages"] += 1
        else:
            # Read every other message by what it carries (author, text, attachments, reference),
            # never by its type name: the exporter writes Discord kinds its enum does not name as
            # numbers ("20" is a slash-command response), and those carry generations too.
            if kind not in USER_KINDS:
                self._unknown_kind(kind, m, path)
            author = m.get("author") or {}
            if self.grammar.is_generator(author):
                self._bot_message(m, author)
            elif author.get("isBot"):
                self.report.ignored_messages["other bots"] += 1
            else:
                self._user_message(m, author)
        self._since_sweep += 1
        if self._since_sweep >= 256:
            self._since_sweep = 0
            yield from self.sweep(self.now - self.window_ms)

    def _unknown_kind(self, kind: str, m: dict[str, Any], path: Path) -> None:
        self.report.unknown_types[kind] += 1
        if kind not in self._warned_kinds:
            self._warned_kinds.add(kind)
            label = f"Discord message type {kind}" if kind.isdigit() else f"message type {kind!r}"
            logger.info(
                "%s: message %s has %s, which the exporter does not name; it is read by its author, "
                "text, attachments and reference like any message (counted in unknown_types)",
                path,
                m["id"],
                label,
            )

    def _user_message(self, m: dict[str, Any], author: dict[str, Any]) -> None:
        content = m.get("content") or ""
        user = str(author.get("id") or author.get("name") or "")
        ref = _reference_id(m)
        if self.grammar.is_request(content):
            self._request(m, user, content, ref)
        elif ref is not None and ref in self.generations:
            self._reply_choice(self.generations[ref], m, user)

    def _request(self, m: dict[str, Any], user: str, content: str, ref: str | None) -> None:
        req = self.grammar.parse_request(content)
        if req is None:
            self.report.skipped["request without a prompt"] += 1
            return
        self.report.requests += 1
        pending = _Request(m["id"], user, self.now, req)
        self.pending[m["id"]] = pending
        replied = self.generations.get(ref) if ref is not None else None
        if replied is not None and self._reply_choice(replied, m, user):
            pending.refines = replied  # the chosen image is the input of a refinement
            return
        if req.init_image or any(is_image_attachment(a) for a in m.get("attachments") or ()):
            pending.drop_reason = "image-conditioned request"
            self.report.skipped["image-conditioned request"] += 1
            return
        if req.seed is not None:
            self._seed_choice(pending)

    def _seed_choice(self, pending: _Request) -> None:
        """A request whose seed is the seed of an image of an earlier generation picks that image."""
        seed = pending.request.seed
        for gen in reversed(self.by_key.get((pending.user, pending.request.prompt), ())):
            if seed not in gen.named_seeds:
                continue
            pending.refines = gen
            if gen.drop_reason is not None or gen.req.refines is not None:
                return  # a pick among refinements or dropped images: the generation chose nothing new
            first = gen.req.request
            if first.seed == seed and first.count == pending.request.count and (first.count or 1) > 1:
                pending.refines = None
                pending.drop_reason = "repeated request"
                self.report.skipped["repeated request (same seed and count)"] += 1
            elif seed in gen.nsfw_seeds:
                gen.ambiguous = gen.ambiguous or "chose an NSFW image"
            elif gen.seeds is None:
                gen.ambiguous = gen.ambiguous or "seeds do not match the images"
            elif gen.seeds.count(seed) > 1:
                gen.ambiguous = gen.ambiguous or "several images share the chosen seed"
            else:
                self._choose(gen, gen.seeds.index(seed), "seed", pending.message_id)
            return

    def _reply_choice(self, gen: _Generation, m: dict[str, Any], user: str) -> bool:
        """A reply to a generation that carries one of its images. True if it named an image."""
        names = [str(a.get("fileName") or "") for a in m.get("attachments") or () if is_image_attachment(a)]
        keys = [url_key(u) for u in find_urls(m.get("content") or "")]
        keys += [url_key(str(a.get("url") or "")) for a in m.get("attachments") or ()]
        hits = {i for i, n in enumerate(gen.names) if n and n in names}
        hits |= {i for i, u in enumerate(gen.urls) if url_key(u) in keys}
        if not hits:
            if self._names_nsfw(gen, names, keys):
                gen.ambiguous = gen.ambiguous or "chose an NSFW image"
                return True
            return False
        if user != gen.req.user:
            self.report.skipped["choice by a user other than the requester"] += 1
        elif gen.grid:
            gen.ambiguous = gen.ambiguous or "reply names the grid, not one cell"
        elif len(hits) > 1:
            gen.ambiguous = gen.ambiguous or "reply names several images"
        else:
            self._choose(gen, hits.pop(), "reply", m["id"])
        return True

    @staticmethod
    def _names_nsfw(gen: _Generation, names: list[str], keys: list[str]) -> bool:
        return bool(gen.nsfw_refs & ({n for n in names if n} | set(keys)))

    def _choose(self, gen: _Generation, index: int, how: str, message_id: str) -> None:
        if gen.chosen and index not in gen.chosen:
            gen.ambiguous = gen.ambiguous or "several different images chosen"
        if not gen.chosen:
            gen.choice_how, gen.choice_id = how, message_id
        gen.chosen.add(index)

    def _bot_message(self, m: dict[str, Any], author: dict[str, Any]) -> None:
        attachments = [a for a in m.get("attachments") or () if is_image_attachment(a)]
        if not attachments:
            return  # queue notices, errors, help text: the request stays pending
        pending = self._find_request(m)
        if pending is None:
            return
        del self.pending[pending.message_id]
        gen = self._generation(m, pending, attachments)
        self.report.generations += 1
        self.generations[gen.message_id] = gen
        self.by_key.setdefault((pending.user, pending.request.prompt), []).append(gen)

    def _find_request(self, m: dict[str, Any]) -> _Request | None:
        ref = _reference_id(m)
        if ref is not None:
            return self.pending.get(ref)
        interaction = m.get("interaction")
        if isinstance(interaction, dict) and str(interaction.get("name", "")).lstrip(
            "/!"
        ) == self.grammar.command.lstrip("!/"):
            found = self._interaction_request(m, interaction)
            if found is not None:
                return found
            # The bot's text does not echo the command: match the prompt as below.
        # Exports from before replies were recorded: the bot's text repeats the prompt.
        content = m.get("content") or ""
        matches = [p for p in self.pending.values() if p.request.prompt in content]
        if len(matches) > 1:
            self.report.skipped["bot reply matches several requests"] += 1
            return None
        return matches[0] if matches else None

    def _interaction_request(self, m: dict[str, Any], interaction: dict[str, Any]) -> _Request | None:
        """Slash commands leave no request message: the bot's text echoes the command."""
        content = m.get("content") or ""
        low = content.lower()
        start = low.find(self.grammar.command.lower())
        req = self.grammar.parse_request(content[start:]) if start >= 0 else None
        if req is None:
            return None
        user = str((interaction.get("user") or {}).get("id") or "")
        pending = _Request(f"interaction-{interaction.get('id') or m['id']}", user, self.now, req)
        self.report.requests += 1
        self.pending[pending.message_id] = pending
        if req.seed is not None:
            self._seed_choice(pending)
        return pending

    def _generation(
        self, m: dict[str, Any], pending: _Request, attachments: list[dict[str, Any]]
    ) -> _Generation:
        req = pending.request
        seeds = self.grammar.parse_seeds(m.get("content") or "")
        nsfw = [self.grammar.is_nsfw(a) for a in attachments]
        meta: dict[str, Any] = {
            "guild": str(self.header.guild.get("id") or ""),
            "channel": self.header.channel_key,
            "channel_name": self.header.channel.get("name"),
            "request_id": pending.message_id,
            "generation_id": m["id"],
            "timestamp": m.get("timestamp"),
            "requested": req.count,
            "request_seed": req.seed,
            "params": req.params,
        }
        drop = pending.drop_reason
        grid = False
        if len(attachments) == 1 and ((seeds and len(seeds) > 1) or (not seeds and (req.count or 1) > 1)):
            grid = True
            n = len(seeds) if seeds else int(req.count or 1)
            layout = GRID_LAYOUTS.get(n)
            ref = self._image_ref(attachments[0])
            images = [_cell_ref(ref, layout, k) for k in range(n)] if layout else []
            names = [""] * len(images)  # a grid's file names a grid, never one cell
            urls = [str(attachments[0].get("url") or "")] * len(images)
            aligned = seeds
            nsfw_seeds = set(seeds or ()) if nsfw[0] else set()
            nsfw_refs = set()
            if layout is None:
                drop = drop or f"grid of {n} images has no known layout"
            elif nsfw[0]:
                drop = drop or "NSFW grid"
            meta["grid"] = {"columns": layout[0], "rows": layout[1]} if layout else None
        else:
            keep = [i for i, bad in enumerate(nsfw) if not bad]
            images = [self._image_ref(attachments[i]) for i in keep]
            names = [str(attachments[i].get("fileName") or "") for i in keep]
            urls = [str(attachments[i].get("url") or "") for i in keep]
            # Seeds name images by position: only trust them if the counts agree.
            aligned = [seeds[i] for i in keep] if seeds and len(seeds) == len(attachments) else None
            nsfw_seeds = {seeds[i] for i, bad in enumerate(nsfw) if bad} if aligned is not None else set()
            nsfw_refs = {str(a.get("fileName") or "") for a, bad in zip(attachments, nsfw) if bad}
            nsfw_refs |= {url_key(str(a.get("url") or "")) for a, bad in zip(attachments, nsfw) if bad}
            meta["nsfw_dropped"] = sum(nsfw)
            if len(images) < 2 and sum(nsfw):
                drop = drop or "fewer than 2 images after dropping NSFW ones"
            elif len(attachments) < 2:
                drop = drop or "single image"
        if pending.refines is not None and drop is None:
            drop = "refinement of a chosen image"
        meta["seeds"] = aligned
        return _Generation(
            message_id=m["id"],
            ms=self.now,
            req=pending,
            images=images,
            names=names,
            urls=urls,
            seeds=aligned,
            named_seeds=set(seeds or ()),
            nsfw_seeds=nsfw_seeds,
            nsfw_refs=nsfw_refs - {""},
            grid=grid,
            drop_reason=drop,
            meta=meta,
        )

    def _image_ref(self, attachment: dict[str, Any]) -> str:
        """The attachment's URL, or for exports made with ``--media`` its local file as a file:// URL.

        The exporter writes the local path as the OS wrote it: relative to the export (or
        absolute), with ``\\`` separators on Windows, and percent-encoded in some versions. The
        first spelling that names an existing file wins; if none does, the plain reading is kept
        and the copy step reports the file missing.
        """
        url = str(attachment.get("url") or "")
        if "://" in url:
            return url
        self.report.local_images += 1
        candidates = local_media_candidates(url, self.export_dir)
        found = next((c for c in candidates if c.is_file()), candidates[0])
        return found.resolve().as_uri()

    # ----- closing generations ----------------------------------------------------------------

    def sweep(self, before_ms: int) -> Iterator[Record]:
        """Close requests and generations older than ``before_ms``, yielding finished choices."""
        for mid in [mid for mid, p in self.pending.items() if p.ms < before_ms]:
            p = self.pending.pop(mid)
            if p.drop_reason is None and p.refines is None:  # a choice needs no answer to count
                self.report.skipped["request without a bot reply with images"] += 1
        old = [mid for mid, g in self.generations.items() if g.ms < before_ms]
        for mid in old:
            gen = self.generations.pop(mid)
            key = (gen.req.user, gen.req.request.prompt)
            gens = self.by_key.get(key)
            if gens is not None:
                gens.remove(gen)
                if not gens:
                    del self.by_key[key]
            record = self._close(gen)
            if record is not None:
                yield record

    def _close(self, gen: _Generation) -> Record | None:
        if gen.req.drop_reason is not None:
            return None  # counted when the request was read
        reason = gen.drop_reason
        if reason is None:
            if gen.ambiguous:
                reason = gen.ambiguous
            elif not gen.chosen:
                reason = "no choice made"
        if reason is not None:
            self.report.skipped[reason] += 1
            return None
        (index,) = gen.chosen
        self.report.choices += 1
        meta = dict(gen.meta, choice_by=gen.choice_how, choice_id=gen.choice_id)
        return Record(
            id=f"discord-{gen.message_id}",
            prompt=gen.req.request.prompt,
            images=gen.images,
            chosen=index,
            user=hash_user(gen.req.user, self.salt),
            source=SOURCE,
            meta=meta,
        )


def local_media_candidates(url: str, export_dir: Path) -> list[Path]:
    """Where a ``--media`` export's local asset path may point, most literal reading first.

    Tries the path with Windows ``\\`` separators as ``/``, as written, percent-decoded, and, for
    absolute paths from another machine (``C:\\...``), its last two parts (``X.json_Files/name``)
    and its file name under the export's folder.
    """
    spellings = [url.replace("\\", "/"), url]
    spellings += [unquote(s) for s in spellings]
    out: list[Path] = []
    for text in dict.fromkeys(spellings):
        windows_abs = len(text) > 2 and text[1] == ":" and text[2] in "/\\"
        path = Path(text)
        if not windows_abs:
            out.append(path if path.is_absolute() else export_dir / path)
        parts = [p for p in text.split("/") if p]
        if len(parts) >= 2:
            out.append(export_dir / parts[-2] / parts[-1])
        if parts:
            out.append(export_dir / parts[-1])
    return list(dict.fromkeys(out))


def _reference_id(m: dict[str, Any]) -> str | None:
    ref = m.get("reference")
    if isinstance(ref, dict) and ref.get("messageId"):
        return str(ref["messageId"])
    return None


def _cell_ref(ref: str, layout: tuple[int, int] | None, k: int) -> str:
    """One cell of a grid image: the grid's URL with a fragment that fetch-images understands."""
    cols, rows = layout or (0, 0)
    return f"{ref}#grid={cols}x{rows}&cell={k}"


def mine_choices(
    exports: Iterable[str | Path],
    *,
    grammar: DreamGrammar | None = None,
    window_minutes: float = 60.0,
    salt: str = "",
    report: MiningReport | None = None,
    progress: bool = False,
) -> Iterator[Record]:
    """Yield choice records from DiscordChatExporter JSON exports, in constant memory.

    Exports are grouped by channel and each channel's exports are read oldest first, so that
    overlapping exports count each message once. An unreadable export is recorded in
    ``report.errors`` (naming the file and the last message read) and mining goes on: what was
    mined before the error is kept.

    Args:
        exports: JSON files written by DiscordChatExporter.
        grammar: how requests and replies are written (dreambot's by default).
        window_minutes: how long after a message its request or generation may still be linked.
        salt: mixed into the hashed user ids.
        report: filled with counts of what was read, kept and skipped.
        progress: show a progress bar over the bytes read.
    """
    from tqdm import tqdm

    grammar = grammar or DreamGrammar()
    report = report if report is not None else MiningReport()
    headers: dict[str, list[ExportHeader]] = {}
    for path in exports:
        report.files.append(str(path))
        try:
            header = read_header(path)
        except DiscordExportError as exc:
            report.errors.append(str(exc))
            continue
        headers.setdefault(header.channel_key, []).append(header)
    total = sum(h.size for hs in headers.values() for h in hs)
    with tqdm(total=total, unit="B", unit_scale=True, desc="mining", disable=not progress) as bar:
        for channel_headers in headers.values():
            channel_headers.sort(key=lambda h: h.first_ms)
            miner: _ChannelMiner | None = None
            seen: list[tuple[int, int]] = []  # id ranges of this channel's exports already read
            for header in channel_headers:
                if miner is None:
                    miner = _ChannelMiner(
                        header, grammar, report, window_ms=int(window_minutes * 60_000), salt=salt
                    )
                miner.header, miner.export_dir = header, header.path.parent
                lo = hi = None
                try:
                    for m in iter_messages(header.path, on_read=bar.update):
                        mid = _as_int(m["id"])
                        if mid is not None and any(a <= mid <= b for a, b in seen):
                            report.duplicate_messages += 1
                            continue
                        if mid is not None:
                            lo = mid if lo is None else min(lo, mid)
                            hi = mid if hi is None else max(hi, mid)
                        report.messages += 1
                        yield from miner.feed(m, header.path)
                except DiscordExportError as exc:
                    report.errors.append(str(exc))
                if lo is not None and hi is not None:
                    seen.append((lo, hi))
            if miner is not None:
                yield from miner.sweep(before_ms=2**62)


def _as_int(value: str) -> int | None:
    try:
        return int(value)
    except ValueError:
        return None


def from_discord(
    exports: Iterable[str | Path],
    out: str | Path,
    *,
    grammar: DreamGrammar | None = None,
    window_minutes: float = 60.0,
    salt: str = "",
    copy_media: bool = True,
    progress: bool = False,
    strict: bool = True,
    allow_missing: bool = False,
) -> MiningReport:
    """Mine choices from exports into the dataset ``out`` (records + ``mining_report.json``).

    Images stay URLs (fetch them with :func:`prefalign.data.fetch_images`), except for exports
    made with ``--media``: their local files are copied into ``out`` (grids cut into cells) when
    ``copy_media`` is set. A local file that a kept record names but that is missing (or does not
    decode) is counted per reason in ``report.missing_media`` and is an error unless
    ``allow_missing``: its record keeps the file:// URL.

    Returns:
        The mining report (also saved as ``out/mining_report.json``).

    Raises:
        MiningError: if ``strict`` and some export could not be read, or local media are missing
            (after saving what was mined from everything readable).
    """
    out = Path(out)
    report = MiningReport()
    with DatasetWriter(out) as writer:
        for record in mine_choices(
            exports,
            grammar=grammar,
            window_minutes=window_minutes,
            salt=salt,
            report=report,
            progress=progress,
        ):
            writer.write(record)
    failed: dict[str, str] = {}
    if copy_media and report.choices:
        from prefalign.data.fetch import fetch_images

        failed = fetch_images(out, schemes=("file",), progress=progress).failed
    report.missing_media = (
        _missing_media(out, failed) if report.choices and report.local_images else Counter()
    )
    if report.missing_media and not allow_missing:
        n = sum(report.missing_media.values())
        reasons = ", ".join(f"{reason}: {count}" for reason, count in report.missing_media.most_common())
        report.errors.append(
            f"{out}: {n} local image file(s) named by the --media export(s) could not be "
            f"{'copied' if copy_media else 'found'} ({reasons}); their records keep file:// URLs. "
            "Export again with the media folder beside the JSON, or pass --allow-missing"
        )
    write_json_atomic(out / MINING_REPORT_FILE, report.to_dict(), indent=2)
    if strict and report.errors:
        raise MiningError(report, out)
    return report


def _missing_media(out: Path, failed: dict[str, str]) -> Counter[str]:
    """Local (file://) images the records still name that are not in the dataset, by reason."""
    from prefalign.data.dataset import load_dataset
    from prefalign.data.grid import parse_cell_ref  # imports PIL: only for --media exports

    counts: Counter[str] = Counter()
    seen: set[str] = set()
    for rec in load_dataset(out):
        for ref in rec.images:
            if not ref.startswith("file:"):
                continue
            cell = parse_cell_ref(ref)
            url = cell.url if cell is not None else ref.partition("#")[0]
            if url in seen:
                continue
            seen.add(url)
            path = Path(url2pathname(unquote(urlsplit(url).path)))
            if not path.is_file():
                counts["local file not found"] += 1
            elif url in failed:
                counts[failed[url].split(":", 1)[0]] += 1
    return counts


def read_mining_report(root: str | Path) -> MiningReport | None:
    """The report ``from_discord`` left in a dataset directory, or None."""
    path = Path(root) / MINING_REPORT_FILE
    if not path.is_file():
        return None
    return MiningReport.from_dict(json.loads(path.read_text(encoding="utf-8")))
