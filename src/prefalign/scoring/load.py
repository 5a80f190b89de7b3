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
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from prefalign.data.images import Preprocess
from prefalign.errors import PrefalignError, first_line
from prefalign.scoring.catalog import JOINT_KINDS
from prefalign.scoring.heads import HEADS, AestheticMLP
from prefalign.scoring.model_format import HEAD_FILE, HEAD_KINDS, SCORE_KINDS, SPEC_FILE, ScorerSpec
from prefalign.scoring.scorer import Scorer

if TYPE_CHECKING:
    from prefalign.scoring.joint import JointScorer


class ScorerLoadError(PrefalignError, ValueError):
    """A scorer that cannot be found or loaded."""


# Hub models and their family defaults: (hub id, kind, preprocessing mode).
HUB_MODELS: dict[str, tuple[str, str, str]] = {
    "pickscore": ("yuvalkirstain/PickScore_v1", "pickscore", "center-crop"),
    "clip-vit-l-14": ("openai/clip-vit-large-patch14", "clip", "center-crop"),
    "clip-vit-b-32": ("openai/clip-vit-base-patch32", "clip", "center-crop"),
    "clip-vit-h-14": ("laion/CLIP-ViT-H-14-laion2B-s32B-b79K", "clip", "center-crop"),
}
# Hub models whose repository holds no tokenizer, and where their authors load it from (the
# PickScore README: processor from laion/CLIP-ViT-H-14-laion2B-s32B-b79K, model PickScore_v1).
HUB_TOKENIZERS: dict[str, str] = {"yuvalkirstain/PickScore_v1": "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"}
# Converted checkpoints: name -> how to make it (the release file and the convert family).
CONVERTED_MODELS: dict[str, tuple[str, str]] = {
    "hps-v1": ("hpc.pt", "hps-v1"),
    "hps-v2": ("HPS_v2_compressed.pt", "hps-v2"),
    "hps-v2.1": ("HPS_v2.1_compressed.pt", "hps-v2.1"),
    "aesthetic": ("sac+logos+ava1-l14-linearMSE.pth", "aesthetic --base openai/clip-vit-large-patch14"),
    "imagereward": ("ImageReward.pt", "imagereward --tokenizer bert-base-uncased"),
    "mps": ("MPS_overall_checkpoint.pth", "mps --tokenizer laion/CLIP-ViT-H-14-laion2B-s32B-b79K"),
    "hpsv3": ("HPSv3.safetensors", "hpsv3 --base Qwen2-VL-7B-Instruct"),
}


# Where each converted name's release file is published (docs/models.md has the details).
RELEASES: dict[str, str] = {
    "hps-v1": "the Google Drive link in the README of github.com/tgxs002/align_sd",
    "hps-v2": "huggingface.co/xswu/HPSv2",
    "hps-v2.1": "huggingface.co/xswu/HPSv2",
    "aesthetic": "github.com/christophschuhmann/improved-aesthetic-predictor",
    "imagereward": "huggingface.co/THUDM/ImageReward",
    "mps": "the checkpoint link in the README of github.com/Kwai-Kolors/MPS",
    "hpsv3": "huggingface.co/MizzenAI/HPSv3",
}
# Converted names whose family needs no separate tokenizer (the aesthetic head reads images only;
# HPSv3 takes its tokenizer from --base) or names it already.
_NO_TOKENIZER_HINT = ("aesthetic", "hpsv3")


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


def convert_command(name: str, out: str | os.PathLike) -> str:
    """The ``prefalign convert`` command that makes the converted model ``name`` at ``out``.

    Raises:
        KeyError: ``name`` is not in ``CONVERTED_MODELS``.
    """
    release, family = CONVERTED_MODELS[name]
    family, _, options = family.partition(" ")
    return f"prefalign convert --from {family} {release} --out {out}" + (f" {options}" if options else "")


def _missing_message(target: str, reason: str) -> str:
    """What to say when ``target`` is neither a local directory nor a hub id that can be read.

    ``reason`` is the hub library's first line (offline: it could not connect).
    """
    offline = _hub_offline() or "connect" in reason.lower()
    where = "found in the local cache (offline)" if offline else "that could be downloaded"
    message = f"{target}: no such directory, and not a hub id {where}"
    name = Path(target).name
    if name in CONVERTED_MODELS:
        message += (
            f". {name} is a converted model: `{convert_command(name, target)}` makes it "
            f"(or `--model {name}` finds it in {prefalign_home() / 'models'}; docs/models.md)"
        )
    elif name in HUB_MODELS:
        hub_id = HUB_MODELS[name][0]
        message += (
            f". Where there is network: `hf download {hub_id} --local-dir {target}` "
            f"and copy it here (docs/models.md)"
        )
    else:
        message += (
            ". Check the path; a hub id is downloaded where there is network with "
            f"`hf download {target} --local-dir models/{name}`, copied here and given by path "
            "(docs/models.md)"
        )
    return message


def _hub_offline() -> bool:
    try:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    except Exception:  # an old or absent huggingface_hub: judged from the error instead
        return False


def load_scorer(
    name_or_path: str | os.PathLike,
    *,
    device: str | None = "auto",
    precision: str = "auto",
    compile: bool = False,
    kind: str | None = None,
    tokenizer: str | os.PathLike | None = None,
    allow_slow: bool = False,
) -> Scorer | JointScorer:
    """Load a scorer by model directory, hub id or known name (see the module docstring).

    The score kind comes from ``prefalign.json``, a ``KIND:`` prefix, ``kind``, or the catalog
    of known hub models; a plain CLIP directory without any of them is scored as ``clip``
    (never guessed from its name: a warning says when the name suggests another family).
    ``scorer.kind_source`` says which of these decided.

    Args:
        name_or_path: what to load; ``KIND:target`` overrides the score kind.
        kind: the score kind (as the prefix; the two must agree when both are given).
        tokenizer: a tokenizer directory or hub id, for a model shipped without one (PickScore).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``...
        precision: ``"auto"`` (detected: bf16 on CPUs with native bf16 and on bf16 GPUs, fp16 on
            other GPUs, else fp32; see ``prefalign.scoring.precision``), ``"fp32"``, ``"bf16"``,
            ``"fp16"`` or ``"int8"`` (torchao).
        compile: compile the image tower (``torch.compile`` + inductor freezing).
        allow_slow: run a GPU-only scorer (HPSv3, a 7B model) on the CPU instead of refusing.

    Returns:
        A ``Scorer`` (CLIP-embedding families: clip, hps, pickscore, reward, aesthetic) or a
        ``JointScorer`` (ImageReward, MPS, HPSv3); all implement ``ScorerLike`` and ``PixelScorerLike``.

    Raises:
        ScorerLoadError: nothing of that name, or a directory that is not a CLIP model.
    """
    target = str(name_or_path)
    kind_override = None
    prefix, sep, rest = target.partition(":")
    if sep and prefix in SCORE_KINDS and not Path(target).exists():
        kind_override, target = prefix, rest
    if kind is not None:
        if kind not in SCORE_KINDS:
            raise ScorerLoadError(f"unknown score kind {kind!r}; expected one of {sorted(SCORE_KINDS)}")
        if kind_override and kind_override != kind:
            raise ScorerLoadError(
                f"{name_or_path}: the prefix says {kind_override!r} but the kind is {kind!r}"
            )
        kind_override = kind

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
                    f"`{convert_command(target, path)}`"
                    + (
                        ""
                        if target in _NO_TOKENIZER_HINT or "--tokenizer" in family
                        else " (add --tokenizer TOKENIZER_DIR when offline)"
                    )
                    + " (docs/models.md)"
                )
        elif target in HUB_MODELS:
            known = target
            target, kind, mode = HUB_MODELS[target]
            hub_defaults = (kind, mode)
        elif target.startswith((".", "/", "~")) or target.count("/") != 1:
            raise ScorerLoadError(
                f"{target}: no such model directory, known name (prefalign score --list-models) or hub id"
            )

    if kind_override is None and (path / SPEC_FILE).is_file():
        joint = _joint_scorer(
            path,
            device=resolve_device(device),
            precision=precision,
            name=str(name_or_path),
            allow_slow=allow_slow,
        )
        if joint is not None:  # ImageReward, MPS...: not a CLIP directory
            return joint

    source = str(path) if path.exists() else target
    spec = _read_spec(path) if path.exists() else None
    try:
        model, tok = _load_clip(source, tokenizer=tokenizer or HUB_TOKENIZERS.get(source))
    except _ConfigUnreadable as exc:
        if path.exists():
            raise
        if hub_defaults is None:  # a path typed wrong, or a hub id neither cached nor reachable
            raise ScorerLoadError(_missing_message(target, exc.reason)) from None
        # a known hub name that is neither cached nor reachable (offline): say where to get it
        raise ScorerLoadError(
            f"{known}: {source} is not in the Hugging Face cache and cannot be downloaded here "
            f"({str(exc).partition('(')[2].rstrip(')')[:200] or 'offline'}). Where there is network: "
            f"`hf download {source} --local-dir models/{known}`, copy models/{known} here, then "
            f"`prefalign score --model models/{known} ...` (docs/models.md)"
        ) from None
    kind_source = f"{SPEC_FILE}"
    if spec is None:
        spec, kind_source = _default_spec(source, model, hub_defaults, warn=not kind_override)
    if kind_override:
        spec.kind = kind_override
        kind_source = "given (KIND: prefix or --kind)"
    head = _load_head(path, spec) if spec.kind in HEAD_KINDS else None
    scorer = Scorer(
        model,
        tok,
        spec,
        head=head,
        device=resolve_device(device),
        precision=precision,
        compile=compile,
        name=str(name_or_path),
    )
    scorer.kind_source = kind_source
    return scorer


class _ConfigUnreadable(ScorerLoadError):
    """No CLIP config could be read (a missing local path, or a hub id neither cached nor reachable)."""

    def __init__(self, source: str, reason: str):
        super().__init__(f"{source}: cannot read a CLIP config ({reason})")
        self.reason = reason


def _read_spec(path: Path) -> ScorerSpec | None:
    if (path / SPEC_FILE).exists():
        return ScorerSpec.load(path)
    if not (path / "config.json").exists():
        raise ScorerLoadError(f"{path}: not a model directory (no {SPEC_FILE} and no config.json)")
    return None


def _load_clip(source: str, tokenizer: str | os.PathLike | None = None):
    """A CLIP model and its tokenizer (from ``source``, or from ``tokenizer`` when given), the
    tokenizer checked against the text tower (``tokenizer_check``)."""
    from transformers import AutoTokenizer, CLIPConfig, CLIPModel
    from transformers.utils import logging as hf_logging

    from prefalign.scoring.tokenizer_check import (
        TokenizerError,
        check_tokenizer,
        has_tokenizer_files,
        missing_tokenizer_message,
    )

    hf_logging.disable_progress_bar()
    try:
        config = CLIPConfig.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise _ConfigUnreadable(source, first_line(exc)) from None
    if config.model_type != "clip":
        raise ScorerLoadError(f"{source}: model_type is {config.model_type!r}, not a CLIP model")
    if tokenizer is None and not has_tokenizer_files(source):
        raise TokenizerError(missing_tokenizer_message(source))
    try:
        # PyTorch's fused attention (SDPA), checked equal to eager by tests/scoring/test_precision.py
        model = CLIPModel.from_pretrained(source, config=config, attn_implementation="sdpa")
    except (OSError, ValueError) as exc:
        raise ScorerLoadError(f"{source}: cannot load the CLIP model ({first_line(exc)})") from None
    if tokenizer is not None:
        from prefalign.scoring.convert import load_tokenizer

        tok, tok_source = load_tokenizer(str(tokenizer)), str(tokenizer)
    else:
        try:
            tok, tok_source = AutoTokenizer.from_pretrained(source), source
        except (OSError, ValueError) as exc:
            raise TokenizerError(f"{missing_tokenizer_message(source)} ({first_line(exc)})") from None
    check_tokenizer(tok, config.text_config.vocab_size, tok_source)
    return model.eval(), tok


# Words in a model's name that suggest a family other than plain CLIP (only ever a warning).
_NAME_HINTS = {"pickscore": "pickscore", "hps": "hps", "aesthetic": "aesthetic", "reward": "reward"}


def _default_spec(
    source: str, model, hub_defaults: tuple[str, str] | None, *, warn: bool = True
) -> tuple[ScorerSpec, str]:
    """Family defaults for a plain HF CLIP directory or hub id, from its image processor config,
    and where the kind came from. The kind is the catalog's for a known name or hub id, else
    ``clip``: never guessed from a directory's name."""
    known = {hub_id: (kind, mode) for hub_id, kind, mode in HUB_MODELS.values()}
    if hub_defaults:
        (kind, mode), kind_source = hub_defaults, "the catalog of known models"
    elif source in known:
        (kind, mode), kind_source = known[source], "the catalog of known hub models"
    else:
        kind, mode = "clip", "center-crop"
        kind_source = f"default for a CLIP model without {SPEC_FILE}"
        hint = next((k for word, k in _NAME_HINTS.items() if word in Path(source).name.lower()), None)
        if warn and hint:
            warnings.warn(
                f"{source}: no {SPEC_FILE}, so it is scored as plain CLIP cosine (kind clip) although its "
                f"name suggests {hint}; {_kind_hint(hint, source)}",
                stacklevel=3,
            )
    pre = {"mode": mode, "size": model.config.vision_config.image_size}
    proc = _preprocessor_config(source)
    if proc:
        pre["mean"] = proc.get("image_mean", Preprocess.mean)
        pre["std"] = proc.get("image_std", Preprocess.std)
    spec = ScorerSpec(kind=kind, preprocess=Preprocess.from_dict(pre), provenance={"source": source})
    return spec, kind_source


def _kind_hint(kind: str, source: str) -> str:
    """Exactly what to type to score ``source`` (a CLIP directory without prefalign.json) as
    ``kind``, for the warning of ``_default_spec``."""
    from prefalign.scoring.tokenizer_check import DEFAULT_CLIP_TOKENIZER, has_tokenizer_files

    tokenizer = "" if has_tokenizer_files(source) else f" --tokenizer {DEFAULT_CLIP_TOKENIZER}"
    local = " (or a directory with its tokenizer files, offline)" if tokenizer else ""
    if kind in ("pickscore", "hps"):  # the same CLIP weights, another score: no head
        family = "pickscore" if kind == "pickscore" else "hf-clip --kind hps"
        return (
            f"to score it as {kind}, give `--model {kind}:{source}{tokenizer}`{local}, or convert it once "
            f"with `prefalign convert --from {family} {source} --out {source}-prefalign{tokenizer}` "
            f"and give `--model {source}-prefalign`"
        )
    if kind == "aesthetic":  # a head on CLIP image embeddings: only the release file has it
        return (
            "an aesthetic scorer needs its MLP head: convert the release file once with "
            f"`prefalign convert --from aesthetic sac+logos+ava1-l14-linearMSE.pth --base {source} "
            "--out models/aesthetic` and give `--model models/aesthetic` (docs/models.md)"
        )
    return (
        f"a reward model needs its head ({HEAD_FILE}) and {SPEC_FILE}, as `prefalign train reward` "
        "writes them: give the directory that command wrote"
    )


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


def _joint_scorer(path: Path, **kwargs) -> JointScorer | None:
    """The scorer of a directory whose kind is in ``JOINT_KINDS`` (its own model), else None."""
    spec = ScorerSpec.load(path)
    if spec.kind not in JOINT_KINDS:
        return None
    from prefalign.scoring.joint_load import load_joint_scorer

    return load_joint_scorer(path, spec, **kwargs)
