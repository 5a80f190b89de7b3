"""Check a dataset: ``prefalign data validate``.

Reports duplicate ids, empty prompts, records without images, choices or ranks that do not fit
the images, images not fetched yet, missing files and files that do not decode.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from prefalign.data.dataset import Dataset, load_dataset


@dataclass
class ValidationReport:
    """Problems found, as (record id, what is wrong), and what was checked."""

    records: int = 0
    images_checked: int = 0
    problems: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def counts(self) -> Counter[str]:
        """How many problems of each kind (the text before the first colon)."""
        return Counter(p.split(":", 1)[0] for _, p in self.problems)


def _record_problems(dataset: Dataset) -> list[tuple[str, str]]:
    problems = []
    ids = Counter(r.id for r in dataset)
    for rid, n in ids.items():
        if n > 1:
            problems.append((rid, f"duplicate id: {n} records share it"))
    for rec in dataset:
        n = len(rec.images)
        if not rec.prompt or not rec.prompt.strip():
            problems.append((rec.id, "empty prompt"))
        if n == 0:
            problems.append((rec.id, "no images"))
        if rec.chosen is not None and not 0 <= rec.chosen < n:
            problems.append((rec.id, f"choice out of range: chosen={rec.chosen} with {n} images"))
        if rec.ranks is not None and len(rec.ranks) != n:
            problems.append((rec.id, f"ranks do not fit the images: {len(rec.ranks)} ranks, {n} images"))
        if rec.ratings is not None and len(rec.ratings) != n:
            problems.append(
                (rec.id, f"ratings do not fit the images: {len(rec.ratings)} ratings, {n} images")
            )
    return problems


def _image_problem(path: str) -> str | None:
    if "://" in path:
        return f"image not fetched: {path} (run `prefalign data fetch-images`)"
    if not Path(path).is_file():
        return f"missing image: {path}"
    from prefalign.data.images import ImageLoadError, load_image  # torch comes with it: only here

    try:
        load_image(path)
    except ImageLoadError as exc:
        return f"undecodable image: {path}: {exc.reason}"
    return None


def validate_dataset(path: str | Path, *, check_images: bool = True, workers: int = 4) -> ValidationReport:
    """Check every record (and, unless ``check_images`` is False, decode every image).

    Returns:
        A report; ``report.ok`` is True when nothing is wrong.
    """
    dataset = load_dataset(path)
    report = ValidationReport(records=len(dataset))
    report.problems.extend(_record_problems(dataset))
    refs = [(rec.id, dataset.image_path(img)) for rec in dataset for img in rec.images]
    if not check_images:  # URLs are known without opening anything
        reported_urls = {p for _, p in refs if "://" in p}
        report.problems.extend(
            (rid, _image_problem(p) or "") for rid, p in _first_by_path(refs, reported_urls)
        )
    else:
        unique = list(dict.fromkeys(p for _, p in refs))
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            results = dict(zip(unique, pool.map(_image_problem, unique), strict=True))
        report.images_checked = len(unique)
        reported: set[str] = set()
        for rid, p in refs:
            if results[p] and p not in reported:
                reported.add(p)
                report.problems.append((rid, results[p]))
    return report


def _first_by_path(refs: list[tuple[str, str]], paths: set[str]) -> list[tuple[str, str]]:
    """(record id, path) for the first record naming each of ``paths``."""
    seen: set[str] = set()
    out = []
    for rid, p in refs:
        if p in paths and p not in seen:
            seen.add(p)
            out.append((rid, p))
    return out
