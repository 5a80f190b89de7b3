"""Share a result on the Hugging Face Hub: a scorer model, a LoRA adapter, a dataset or a pipeline.

:func:`stage` copies (hard-links where it can) the directory into a staging folder and adds a
generated card (``README.md``) stating what it is and how it was made, read from the files
prefalign wrote beside it (``prefalign.json``, ``prefalign_adapter.json``,
``training_config.yaml``, ``records.parquet``). :func:`push` then creates the repository and
uploads the staged folder with ``huggingface_hub``'s ``upload_folder``: the only network call.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefalign.errors import PrefalignError

CARD_FILE = "README.md"
KINDS = ("model", "adapter", "dataset", "pipeline")


class PushError(PrefalignError):
    """A directory that cannot be shared as it is, naming it and the fix."""


@dataclass
class Staged:
    """A staged upload: the folder, what it is, and the hub repository type."""

    folder: Path
    kind: str
    repo_type: str  # "model" or "dataset"
    files: list[str]


def detect_kind(directory: Path) -> str:
    """model (a prefalign scorer), adapter (a LoRA), dataset, or pipeline (a diffusers model).

    Raises:
        PushError: none of these.
    """
    if (directory / "prefalign_adapter.json").is_file() or (
        directory / "pytorch_lora_weights.safetensors"
    ).is_file():
        return "adapter"
    if (directory / "records.parquet").is_file():
        return "dataset"
    if (directory / "prefalign.json").is_file():
        return "model"
    if (directory / "model_index.json").is_file():
        return "pipeline"
    raise PushError(
        f"{directory}: not a prefalign model (prefalign.json), adapter (prefalign_adapter.json), dataset "
        "(records.parquet) or diffusers pipeline (model_index.json)"
    )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except json.JSONDecodeError:
        return {}


def _dataset_facts(directory: Path) -> tuple[dict[str, Any], list[str]]:
    """Counts for the card, and image references that point outside the directory."""
    from prefalign.data.dataset import load_dataset

    ds = load_dataset(directory)
    outside = [
        i for r in ds for i in r.images if "://" not in i and (Path(i).is_absolute() or ".." in Path(i).parts)
    ]
    splits: dict[str, int] = {}
    for r in ds:
        splits[r.split or "unsplit"] = splits.get(r.split or "unsplit", 0) + 1
    labels = {
        "single choice": sum(r.chosen is not None for r in ds),
        "ranking": sum(r.ranks is not None for r in ds),
        "ratings": sum(r.ratings is not None for r in ds),
    }
    sources = sorted({r.source for r in ds if r.source})
    facts = {
        "records": len(ds),
        "images": sum(len(r.images) for r in ds),
        "splits": splits,
        "labels": labels,
        "sources": sources,
    }
    return facts, outside


def _hub_id(base: Any) -> str | None:
    """``base`` when it names a hub repository (``user/name``, not a local path), else None."""
    if not base:
        return None
    text = str(base)
    if text.startswith((".", "/", "~")) or text.count("/") != 1 or Path(text).exists():
        return None
    return text


def _kohya_files(directory: Path) -> list[str]:
    """The kohya-layout LoRA files in ``directory`` (``export-lora --format kohya`` writes
    ``ss_network_module`` into their safetensors metadata), by name."""
    from safetensors import safe_open

    found = []
    for file in sorted(directory.glob("*.safetensors")):
        try:
            with safe_open(str(file), framework="np") as fh:
                metadata = fh.metadata() or {}
        except Exception:  # not a readable safetensors file: not a kohya export
            continue
        if "ss_network_module" in metadata:
            found.append(file.name)
    return found


def make_card(directory: Path, kind: str, repo: str) -> str:
    """The model or dataset card: YAML metadata, what it is, and how it was made (from its files)."""
    lines: list[str]
    if kind == "adapter":
        info = _read_json(directory / "prefalign_adapter.json")
        base = _hub_id(info.get("base"))
        sdxl = info.get("family") == "sdxl"
        meta = [
            "library_name: diffusers",
            "tags:",
            "- prefalign",
            "- lora",
            "- text-to-image",
            "- stable-diffusion" + ("-xl" if sdxl else ""),
        ]
        if base:
            meta.append(f"base_model: {base}")
        pipeline = "StableDiffusionXLPipeline" if sdxl else "StableDiffusionPipeline"
        placeholder = "YOUR_SDXL_BASE" if sdxl else "YOUR_SD15_BASE"
        lines = [
            f"# {repo}",
            "",
            f"A LoRA adapter for a Stable Diffusion{' XL' if sdxl else ''} UNet, made with prefalign.",
            "",
            "```python",
            f"from diffusers import {pipeline}",
            f'pipe = {pipeline}.from_pretrained("{base or placeholder}")'
            + ("" if base else f"  # your SD{'XL' if sdxl else ' 1.5'} base: a hub id or a local folder"),
            f'pipe.load_lora_weights("{repo}")',
            "```",
        ]
        if not base and info.get("base"):
            lines += [
                "",
                f"Trained on a local copy of its base (`{Path(str(info['base'])).name}`), whose hub id prefalign "
                "did not record: load the same base in its place.",
            ]
        kohya = _kohya_files(directory)
        if kohya:
            lines += [
                "",
                "For AUTOMATIC1111 / ComfyUI (kohya layout, from `prefalign adapt export-lora --format kohya`): "
                + ", ".join(f"`{name}`" for name in kohya)
                + " into `models/Lora/` (A1111) or `models/loras/` (ComfyUI).",
            ]
        else:
            lines += [
                "",
                "For AUTOMATIC1111 / ComfyUI: `prefalign adapt export-lora DIR --format kohya --out NAME.safetensors` "
                "on a download of this repository writes the kohya file those tools load.",
            ]
        if info.get("identifier"):
            lines += [
                "",
                f"Use the identifier as negative prompt: `{info['identifier'].strip()}` (HPS section 6).",
            ]
        lines += ["", "## How it was made", "", "```json", json.dumps(info, indent=2, sort_keys=True), "```"]
    elif kind == "model":
        spec = _read_json(directory / "prefalign.json")
        meta = ["library_name: transformers", "tags:", "- prefalign", "- clip", "- human-preference"]
        lines = [
            f"# {repo}",
            "",
            f"A preference scorer in the prefalign model format (score kind `{spec.get('kind', '?')}`).",
            "",
            "```python",
            "import prefalign",
            f'scorer = prefalign.load_scorer("{repo}")  # after `hf download {repo} --local-dir DIR`: DIR',
            "```",
            "",
            "## How it was made",
            "",
            "```json",
            json.dumps(spec, indent=2, sort_keys=True),
            "```",
        ]
        if (directory / "training_config.yaml").is_file():
            lines += [
                "",
                "Training configuration:",
                "",
                "```yaml",
                (directory / "training_config.yaml").read_text(),
                "```",
            ]
    elif kind == "dataset":
        facts, _ = _dataset_facts(directory)
        meta = [
            "tags:",
            "- prefalign",
            "- human-preference",
            "- text-to-image",
            "configs:",
            "- config_name: default",
            "  data_files: records.parquet",
        ]
        lines = [
            f"# {repo}",
            "",
            "A preference dataset in the prefalign format: records.parquet (prompt, images, chosen / ranks / "
            "ratings, user, split, meta) and the images it references by relative path.",
            "",
            "```python",
            "import prefalign",
            'ds = prefalign.load_dataset("DIR")  # after `hf download '
            + repo
            + " --repo-type dataset --local-dir DIR`",
            "```",
            "",
            "## What it holds",
            "",
            f"- records: {facts['records']:,}; images: {facts['images']:,}",
            f"- splits: {', '.join(f'{k} {v:,}' for k, v in sorted(facts['splits'].items()))}",
            f"- labels: {', '.join(f'{k} {v:,}' for k, v in facts['labels'].items())}",
            f"- made from: {', '.join(facts['sources']) or 'not recorded'}",
        ]
        report = directory / "mining_report.json"
        if report.is_file():
            lines += ["", "Mining report:", "", "```json", report.read_text(encoding="utf-8").strip(), "```"]
    else:
        meta = ["library_name: diffusers", "tags:", "- prefalign", "- text-to-image", "- stable-diffusion"]
        lines = [f"# {repo}", "", "A Stable Diffusion pipeline in diffusers' layout, shared with prefalign."]
    from prefalign import __version__

    lines += ["", f"Card generated by prefalign {__version__} (`prefalign push`)."]
    return "---\n" + "\n".join(meta) + "\n---\n\n" + "\n".join(lines) + "\n"


def stage(directory: str | Path, repo: str, staging: str | Path, *, kind: str | None = None) -> Staged:
    """Copy ``directory`` and a generated card into ``staging`` (which must not exist).

    A README.md already in ``directory`` is kept instead of the generated card. Files are
    hard-linked where possible (no extra disk), else copied; hidden files are left out.

    Raises:
        PushError: an unknown kind, ``staging`` exists, or a dataset referencing images outside
            its directory (they would not be uploaded).
    """
    directory, staging = Path(directory), Path(staging)
    if not directory.is_dir():
        raise PushError(f"{directory}: no such directory")
    if repo.count("/") != 1 or repo.startswith("/") or repo.endswith("/"):
        raise PushError(f"--repo {repo!r}: expected user/name (or org/name)")
    kind = kind or detect_kind(directory)
    if kind not in KINDS:
        raise PushError(f"unknown kind {kind!r}; expected one of {KINDS}")
    if kind == "dataset":
        _, outside = _dataset_facts(directory)
        if outside:
            raise PushError(
                f"{directory}: {len(outside):,} image reference(s) point outside the dataset (e.g. {outside[0]}); "
                "they would not be uploaded. Re-import with the images copied in (e.g. `data split --in-place` "
                "instead of --out, or `data import ... --images copy`)"
            )
    if staging.exists():
        raise PushError(f"{staging}: exists; choose a new staging folder")
    files: list[str] = []
    for root, dirs, names in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if name.startswith("."):
                continue
            src = Path(root) / name
            rel = src.relative_to(directory)
            dst = staging / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)
            files.append(rel.as_posix())
    if CARD_FILE not in files:
        (staging / CARD_FILE).write_text(make_card(directory, kind, repo), encoding="utf-8")
        files.append(CARD_FILE)
    return Staged(staging, kind, "dataset" if kind == "dataset" else "model", sorted(files))


def push(staged: Staged, repo: str, *, private: bool = False, message: str | None = None, api=None) -> str:
    """Create ``repo`` (if needed) and upload the staged folder; returns the commit URL.

    ``api`` is an ``huggingface_hub.HfApi`` (a fake in tests); the token is huggingface_hub's
    own (``hf auth login`` or ``HF_TOKEN``).
    """
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi()
    from prefalign.errors import first_line

    try:
        api.create_repo(repo, repo_type=staged.repo_type, private=private, exist_ok=True)
        commit = api.upload_folder(
            folder_path=str(staged.folder),
            repo_id=repo,
            repo_type=staged.repo_type,
            commit_message=message or f"Upload {staged.kind} with prefalign",
        )
    except Exception as exc:  # network, auth, offline mode: one line, the hub's own reason
        raise PushError(
            f"{repo}: upload failed ({first_line(exc)[:300]}); check the network and `hf auth login`"
        ) from None
    return str(getattr(commit, "commit_url", commit))
