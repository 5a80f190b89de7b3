"""Download the images a dataset still names by URL: ``prefalign data fetch-images``.

* Concurrent (a thread pool), with a timeout per request and retries with backoff for network
  errors, 429 and 5xx answers; other 4xx answers fail at once.
* Resumable: each URL has a deterministic file name under ``images/``, so a second run fetches
  only what is missing; records are rewritten (atomically) to point at the files.
* Atomic per file: data goes to a temporary file that is renamed into place only once the image
  has decoded, so an interrupted run never leaves a half image behind.
* Grid images (``#grid=CxR&cell=k`` references, see :mod:`prefalign.data.grid`) are downloaded
  once and cut into cells.
* ``file://`` URLs (exports made with DiscordChatExporter's ``--media``) are copied the same way.
"""

from __future__ import annotations

import hashlib
import logging
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from prefalign.data.dataset import load_dataset, save_dataset
from prefalign.data.grid import cut_grid, parse_cell_ref
from prefalign.files import write_atomic

logger = logging.getLogger(__name__)

IMAGES_DIR = "images"
USER_AGENT = "prefalign-fetch-images/0.1"
MAX_BYTES = 64 * 1024 * 1024  # no generated image comes near; a bigger answer is not an image


class FetchFailed(Exception):
    """A download that failed; ``permanent`` if retrying cannot help."""

    def __init__(self, reason: str, *, permanent: bool = False):
        super().__init__(reason)
        self.permanent = permanent


@dataclass
class FetchReport:
    """What a fetch run did: URLs downloaded, found already on disk, and failed (with reasons)."""

    fetched: int = 0
    already_present: int = 0
    failed: dict[str, str] = field(default_factory=dict)


@dataclass
class _Job:
    url: str
    cells: dict[int, tuple[int, int]] = field(default_factory=dict)  # cell -> (columns, rows)
    whole: bool = False


def url_file_stem(url: str) -> str:
    """The deterministic file stem of a URL's image under ``images/``."""
    return hashlib.sha1(url.encode("utf-8")).hexdigest()[:20]


def _suffix(url: str) -> str:
    suffix = Path(unquote(urlsplit(url).path)).suffix.lower()
    return suffix if suffix in (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp") else ".png"


def _targets(job: _Job) -> dict[str | int, str]:
    """Relative destination path of the whole image ("whole") and of each needed cell."""
    stem = f"{IMAGES_DIR}/{url_file_stem(job.url)}"
    out: dict[str | int, str] = {}
    if job.whole:
        out["whole"] = stem + _suffix(job.url)
    for cell in job.cells:
        out[cell] = f"{stem}_{cell}.png"
    return out


def download(url: str, *, timeout: float = 30.0, retries: int = 3, backoff: float = 0.5) -> bytes:
    """The bytes at ``url`` (http, https or file), retrying transient failures.

    Raises:
        FetchFailed: with the reason, after the last try or at once for permanent failures.
    """
    scheme = urlsplit(url).scheme
    if scheme == "file":
        path = Path(urllib.request.url2pathname(unquote(urlsplit(url).path)))
        if not path.is_file():
            raise FetchFailed(f"local file not found: {path}", permanent=True)
        return path.read_bytes()
    if scheme not in ("http", "https"):
        raise FetchFailed(f"unsupported URL scheme {scheme!r}", permanent=True)
    last = "no attempt"
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1))
        try:
            request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
            with urllib.request.urlopen(request, timeout=timeout) as response:
                data = response.read(MAX_BYTES + 1)
            if len(data) > MAX_BYTES:
                raise FetchFailed(f"larger than {MAX_BYTES} bytes", permanent=True)
            return data
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code} {exc.reason}"
            if exc.code != 429 and exc.code < 500:
                raise FetchFailed(last, permanent=True) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            last = f"network error: {reason}"
    raise FetchFailed(f"{last} (after {retries + 1} tries)")


def _run_job(root: Path, job: _Job, timeout: float, retries: int) -> None:
    from prefalign.data.images import ImageLoadError, load_image

    data = download(job.url, timeout=timeout, retries=retries)
    try:
        image = load_image(data)
    except ImageLoadError as exc:
        raise FetchFailed(f"does not decode as an image: {exc.reason}", permanent=True) from None
    targets = _targets(job)
    if job.whole:
        write_atomic(root / targets["whole"], data, suffix=".part")
    if job.cells:
        by_layout: dict[tuple[int, int], list] = {}
        for cell, (cols, rows) in job.cells.items():
            if (cols, rows) not in by_layout:
                by_layout[(cols, rows)] = cut_grid(image, cols, rows)
            crop = by_layout[(cols, rows)][cell]
            write_atomic(
                root / targets[cell], lambda fh, crop=crop: crop.save(fh, format="PNG"), suffix=".part"
            )


def fetch_images(
    root: str | Path,
    *,
    workers: int = 8,
    timeout: float = 30.0,
    retries: int = 3,
    schemes: tuple[str, ...] = ("http", "https", "file"),
    progress: bool = False,
) -> FetchReport:
    """Download every image a dataset names by URL into ``root/images/`` and point records at them.

    Args:
        root: the dataset directory.
        workers: concurrent downloads.
        timeout: seconds per request.
        retries: further tries after a transient failure (network error, 429, 5xx).
        schemes: which URLs to fetch (``("file",)`` copies local media only).
        progress: show a progress bar.

    Returns:
        What was fetched, already present, and failed. Records whose images failed keep their URLs
        (``prefalign data validate`` lists them), so a later run can try again.
    """
    from tqdm import tqdm

    root = Path(root)
    dataset = load_dataset(root)
    jobs: dict[str, _Job] = {}
    for rec in dataset:
        for ref in rec.images:
            if "://" not in ref or urlsplit(ref).scheme not in schemes:
                continue
            cell = parse_cell_ref(ref)
            if cell is not None:
                jobs.setdefault(cell.url, _Job(cell.url)).cells[cell.cell] = (cell.columns, cell.rows)
            else:
                jobs.setdefault(ref.partition("#")[0], _Job(ref.partition("#")[0])).whole = True
    report = FetchReport()
    todo = []
    for job in jobs.values():
        if all((root / t).is_file() for t in _targets(job).values()):
            report.already_present += 1
        else:
            todo.append(job)
    with (
        ThreadPoolExecutor(max_workers=max(1, workers)) as pool,
        tqdm(total=len(todo), unit="img", desc="fetching", disable=not (progress and todo)) as bar,
    ):
        futures = {pool.submit(_run_job, root, job, timeout, retries): job for job in todo}
        for future in as_completed(futures):
            job = futures[future]
            try:
                future.result()
                report.fetched += 1
            except FetchFailed as exc:
                report.failed[job.url] = str(exc)
                logger.warning("%s: %s", job.url, exc)
            bar.update(1)
    if jobs:
        _point_records_at_files(dataset, jobs, report)
        save_dataset(dataset.records, root)
    return report


def _point_records_at_files(dataset, jobs: dict[str, _Job], report: FetchReport) -> None:
    for rec in dataset:
        new = []
        for ref in rec.images:
            cell = parse_cell_ref(ref) if "://" in ref else None
            url = cell.url if cell else ref.partition("#")[0]
            job = jobs.get(url) if "://" in ref else None
            if job is None or url in report.failed:
                new.append(ref)
                continue
            new.append(_targets(job)[cell.cell if cell else "whole"])
        if new != rec.images:
            rec.meta.setdefault("image_urls", list(rec.images))
            rec.images = new
