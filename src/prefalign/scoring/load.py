"""``load_scorer`` and ``list_scorers``: one entry point over every scorer family.

A scorer is named by:

* a model directory in the prefalign format (``prefalign.json`` beside an HF CLIP model);
* a plain Hugging Face CLIP directory or hub id (``openai/clip-vit-large-patch14``,
  ``yuvalkirstain/PickScore_v1``), scored with the defaults of its family;
* a known name (``list_scorers()``): converted checkpoints are looked up in
  ``$PREFALIGN_HOME/models/NAME`` (default ``~/.cache/prefalign/models``), hub models by id;
* any of the above behind a kind prefix that overrides the score kind, e.g. ``clip:DIR``
  scores an HPS model directory as plain cosine similarity.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from prefalign.data.images import Preprocess
from prefalign.errors import PrefalignError, first_line
from prefalign.scoring.heads import HEADS, AestheticMLP
from prefalign.scoring.model_format import HEAD_FILE, HEAD_KINDS, SCORE_KINDS, SPEC_FILE, ScorerSpec
from prefalign.scoring.scorer import Scorer


class ScorerLoadError(PrefalignError, ValueError):
    """A scorer that cannot be found or loaded."""


# Hub models and their family defaults: (hub id, kind, preprocessing mode).
HUB_MODELS: dict[str, tuple[str, str, str]] = {
    "pickscore": ("yuvalkirstain/PickScore_v1", "pickscore", "center-crop"),
    "clip-vit-l-14": ("openai/clip-vit-large-patch14", "clip", "center-crop"),
    "clip-vit-b-32": ("openai/clip-vit-base-patch32", "clip", "center-crop"),
    "clip-vit-h-14": ("laion/CLIP-ViT-H-14-laion2B-s32B-b79K", "clip", "center-crop"),
}
# Converted checkpoints: name -> how to make it (the release file and the convert family).
CONVERTED_MODELS: dict[str, tuple[str, str]] = {
    "hps-v1": ("hpc.pt", "hps-v1"),
    "hps-v2": ("HPS_v2_compressed.pt", "hps-v2"),
    "hps-v2.1": ("HPS_v2.1_compressed.pt", "hps-v2"),
    "aesthetic": ("sac+logos+ava1-l14-linearMSE.pth", "aesthetic --base openai/clip-vit-large-patch14"),
}


# Where each converted name's release file is published (docs/models.md has the details).
RELEASES: dict[str, str] = {
    "hps-v1": "the Google Drive link in the README of github.com/tgxs002/align_sd",
    "hps-v2": "huggingface.co/xswu/HPSv2",
    "hps-v2.1": "huggingface.co/xswu/HPSv2",
    "aesthetic": "github.com/christophschuhmann/improved-aesthetic-predictor",
}


def prefalign_home() -> Path:
    """Where named converted models live: ``$PREFALIGN_HOME`` or ``~/.cache/prefalign``."""
    return Path(os.environ.get("PREFALIGN_HOME", Path.home() / ".cache" / "prefalign"))


def list_scorers() -> list[str]:
    """Names ``load_scorer`` accepts besides paths and hub ids."""
    return sorted([*CONVERTED_MODELS, *HUB_MODELS])


def resolve_device(device: str | None) -> str:
    """``"auto"`` (or None) means CUDA when available (this process's GPU when launched with
    others), else CPU."""
    if device in (None, "auto"):
        if not torch.cuda.is_available():
            return "cpu"
        return f"cuda:{os.environ['LOCAL_RANK']}" if "LOCAL_RANK" in os.environ else "cuda"
    return device


def load_scorer(
    name_or_path: str | os.PathLike,
    *,
    device: str | None = "auto",
    precision: str = "fp32",
    compile: bool = False,
) -> Scorer:
    """Load a scorer by model directory, hub id or known name (see the module docstring).

    Args:
        name_or_path: what to load; ``KIND:target`` overrides the score kind.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``...
        precision: ``"fp32"``, ``"fp16"`` or ``"bf16"``.
        compile: compile the image tower (``torch.compile`` + inductor freezing).

    Raises:
        ScorerLoadError: nothing of that name, or a directory that is not a CLIP model.
    """
    target = str(name_or_path)
    kind_override = None
    prefix, sep, rest = target.partition(":")
    if sep and prefix in SCORE_KINDS and not Path(target).exists():
        kind_override, target = prefix, rest

    path = Path(target).expanduser()
    hub_defaults: tuple[str, str] | None = None
    known = target
    if not path.exists():
        if target in CONVERTED_MODELS:
            path = prefalign_home() / "models" / target
            if not path.exists():
                release, family = CONVERTED_MODELS[target]
                raise ScorerLoadError(
                    f"{target}: not converted yet ({path} does not exist). Download {release} "
                    f"({RELEASES.get(target, 'see docs/models.md')}) and convert it: "
                    f"`prefalign convert --from {family} {release} --out {path}`"
                    + ("" if target == "aesthetic" else " --tokenizer TOKENIZER_DIR when offline")
                    + " (docs/models.md)"
                )
        elif target in HUB_MODELS:
            known = target
            target, kind, mode = HUB_MODELS[target]
            hub_defaults = (kind, mode)
        elif target.startswith((".", "/", "~")) or target.count("/") != 1:
            raise ScorerLoadError(f"{target}: no such model directory, known name or hub id")

    source = str(path) if path.exists() else target
    spec = _read_spec(path) if path.exists() else None
    try:
        model, tokenizer = _load_clip(source)
    except ScorerLoadError as exc:
        if hub_defaults is None:
            raise
        # a known hub name that is neither cached nor reachable (offline): say where to get it
        raise ScorerLoadError(
            f"{known}: {source} is not in the Hugging Face cache and cannot be downloaded here "
            f"({str(exc).partition('(')[2].rstrip(')')[:200] or 'offline'}). Where there is network: "
            f"`hf download {source} --local-dir models/{known}`, copy models/{known} here, then "
            f"`prefalign score --model models/{known} ...` (docs/models.md)"
        ) from None
    if spec is None:
        spec = _default_spec(source, model, hub_defaults)
    if kind_override:
        spec.kind = kind_override
    head = _load_head(path, spec) if spec.kind in HEAD_KINDS else None
    return Scorer(
        model,
        tokenizer,
        spec,
        head=head,
        device=resolve_device(device),
        precision=precision,
        compile=compile,
        name=str(name_or_path),
    )


def _read_spec(path: Path) -> ScorerSpec | None:
    if (path / SPEC_FILE).exists():
        return ScorerSpec.load(path)
    if not (path / "config.json").exists():
        raise ScorerLoadError(f"{path}: not a model directory (no {SPEC_FILE} and no config.json)")
    return None


def _load_clip(source: str):
    from transformers import AutoTokenizer, CLIPConfig, CLIPModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        config = CLIPConfig.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise ScorerLoadError(f"{source}: cannot read a CLIP config ({first_line(exc)})") from None
    if config.model_type != "clip":
        raise ScorerLoadError(f"{source}: model_type is {config.model_type!r}, not a CLIP model")
    try:
        model = CLIPModel.from_pretrained(source, config=config)
        tokenizer = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise ScorerLoadError(
            f"{source}: cannot load the CLIP model or tokenizer ({first_line(exc)})"
        ) from None
    return model.eval(), tokenizer


def _default_spec(source: str, model, hub_defaults: tuple[str, str] | None) -> ScorerSpec:
    """Family defaults for a plain HF CLIP directory or hub id, from its image processor config."""
    kind, mode = hub_defaults or ("pickscore" if "pickscore" in source.lower() else "clip", "center-crop")
    pre = {"mode": mode, "size": model.config.vision_config.image_size}
    proc = _preprocessor_config(source)
    if proc:
        pre["mean"] = proc.get("image_mean", Preprocess.mean)
        pre["std"] = proc.get("image_std", Preprocess.std)
    return ScorerSpec(kind=kind, preprocess=Preprocess.from_dict(pre), provenance={"source": source})


def _preprocessor_config(source: str) -> dict | None:
    local = Path(source) / "preprocessor_config.json"
    if local.exists():
        return json.loads(local.read_text())
    try:
        from huggingface_hub import hf_hub_download

        return json.loads(Path(hf_hub_download(source, "preprocessor_config.json")).read_text())
    except Exception:  # absent or offline: CLIP defaults apply
        return None


def _load_head(path: Path, spec: ScorerSpec) -> torch.nn.Module:
    from safetensors.torch import load_file

    head_spec = spec.head or {}
    file = path / head_spec.get("file", HEAD_FILE)
    if not file.exists():
        raise ScorerLoadError(f"{file}: the {spec.kind} head is missing")
    head_type = head_spec.get("type", "reward-mlp" if spec.kind == "reward" else AestheticMLP.head_type)
    if head_type not in HEADS:
        raise ScorerLoadError(f"{path}: unknown head type {head_type!r}; expected one of {sorted(HEADS)}")
    cls = HEADS[head_type]
    state = load_file(file)
    head = cls(cls.dims_from_state_dict(state))
    head.load_state_dict(state)
    return head.eval()
