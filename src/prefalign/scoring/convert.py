"""Exact conversion of foreign checkpoints into the prefalign model format.

Families:

* ``hps-v1`` / ``openai-clip`` — the OpenAI CLIP key layout (``visual.conv1.weight``,
  ``visual.transformer.resblocks.N.attn.in_proj_weight``, ``visual.proj``, ``token_embedding``,
  ``text_projection``, ...), QuickGELU. The HPS v1 release ``hpc.pt`` is ``{'state_dict': ...}``.
* ``hps-v2`` / ``hps-v2.1`` / ``open-clip`` — the open_clip layout (the same key names, often
  behind a ``module.`` prefix), exact GELU. The releases are ViT-H-14.
* ``aesthetic`` — the LAION improved-aesthetic-predictor MLP, attached to a CLIP ViT-L/14 base;
  the linear releases (``layers.0/2/4/6/7``) and the ReLU one (``ava+logos-l14-reluMSE.pth``,
  ``layers.0/3/6/9/11``) are told apart by their keys.
* ``pickscore`` / ``hf-clip`` — a Hugging Face CLIP directory or hub id, saved as it is.

Every dimension is read off the state dict. Only the number of attention heads cannot be: it
defaults to width // 64, except open_clip's wide towers (ViT-H/g/bigG use 80-104 wide heads),
and can be given explicitly. Legacy pickles load with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import logging
import re
import shutil
import tempfile
import warnings
import zipfile
from pathlib import Path

import torch

from prefalign.data.images import Preprocess
from prefalign.errors import PrefalignError, first_line
from prefalign.files import publish_temp_dir
from prefalign.scoring.catalog import FAMILIES
from prefalign.scoring.heads import AESTHETIC_HEADS
from prefalign.scoring.model_format import HEAD_FILE, SPEC_FILE, ScorerSpec

logger = logging.getLogger(__name__)


class ConversionError(PrefalignError, ValueError):
    """A checkpoint that cannot be converted, naming the file and what is wrong with it."""


# open_clip towers whose heads are wider than 64: width -> heads (ViT-H-14, ViT-g-14, ViT-bigG-14).
OPEN_CLIP_VISION_HEADS = {1280: 16, 1408: 16, 1664: 16}
# Entries some releases carry beside the weights (OpenAI's JIT archives, open_clip's mask buffer).
IGNORED_KEYS = {"input_resolution", "context_length", "vocab_size", "attn_mask"}

_BLOCK = re.compile(r"^(visual\.)?transformer\.resblocks\.(\d+)\.")
_BLOCK_PARAMS = (
    "ln_1.weight",
    "ln_1.bias",
    "attn.in_proj_weight",
    "attn.in_proj_bias",
    "attn.out_proj.weight",
    "attn.out_proj.bias",
    "ln_2.weight",
    "ln_2.bias",
    "mlp.c_fc.weight",
    "mlp.c_fc.bias",
    "mlp.c_proj.weight",
    "mlp.c_proj.bias",
)


# ---------------------------------------------------------------------------- reading
def read_state_dict(src: str | Path) -> dict[str, torch.Tensor]:
    """Read a checkpoint's tensors safely: safetensors, a weights-only pickle, or TorchScript.

    ``{'state_dict': sd}`` wrappers and DDP's ``module.`` prefixes are removed.
    """
    src = Path(src)
    if not src.is_file():
        raise ConversionError(f"{src}: no such checkpoint file")
    if src.suffix == ".safetensors":
        from safetensors.torch import load_file

        obj = load_file(src)
    elif _is_torchscript(src):
        # OpenAI's own releases are TorchScript archives: TorchScript's loader runs no pickled
        # Python objects, only the serialised graph, so it is as safe as weights_only.
        obj = torch.jit.load(str(src), map_location="cpu").state_dict()
    else:
        try:
            obj = torch.load(src, map_location="cpu", weights_only=True)
        except Exception as exc:
            if "weights_only" in str(exc) or "Unpickling" in type(exc).__name__:
                raise ConversionError(
                    f"{src}: refused to load: the file holds Python objects other than tensors, and "
                    "prefalign never unpickles arbitrary code (torch.load(weights_only=True)). "
                    "Re-save its state dict with torch.save(model.state_dict(), path)."
                ) from None
            raise ConversionError(f"{src}: not a readable checkpoint ({first_line(exc)})") from None
    for wrapper in ("state_dict", "model", "module"):
        if isinstance(obj, dict) and wrapper in obj and isinstance(obj[wrapper], dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict):
        raise ConversionError(f"{src}: expected a state dict, found {type(obj).__name__}")
    state = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise ConversionError(f"{src}: the checkpoint holds no tensors")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any(name.endswith("constants.pkl") for name in zf.namelist())


# ---------------------------------------------------------------------------- OpenAI / open_clip
def _count_blocks(state: dict[str, torch.Tensor], visual: bool) -> int:
    indices = {int(m.group(2)) for k in state if (m := _BLOCK.match(k)) and bool(m.group(1)) == visual}
    return max(indices) + 1 if indices else 0


def _require(state: dict[str, torch.Tensor], key: str, src: Path) -> torch.Tensor:
    if key not in state:
        raise ConversionError(f"{src}: not in the OpenAI/open_clip CLIP layout: missing key {key!r}")
    return state[key]


def infer_clip_config(
    state: dict[str, torch.Tensor],
    *,
    activation: str,
    src: Path,
    vision_heads: int | None = None,
    text_heads: int | None = None,
    open_clip_heads: bool = False,
):
    """A ``CLIPConfig`` whose every dimension is read off an OpenAI-layout state dict."""
    from transformers import CLIPConfig

    if any(k.startswith(("visual.layer1.", "visual.attnpool.")) for k in state):
        raise ConversionError(
            f"{src}: ResNet image towers (RN50 etc.) are not supported; use a ViT checkpoint"
        )
    if any(k.startswith(("visual.trunk.", "text.")) for k in state):
        raise ConversionError(f"{src}: timm or custom-text open_clip towers are not supported")
    conv = _require(state, "visual.conv1.weight", src)
    vis_width, patch = conv.shape[0], conv.shape[-1]
    grid = round((_require(state, "visual.positional_embedding", src).shape[0] - 1) ** 0.5)
    projection_dim = _require(state, "visual.proj", src).shape[1]
    text_width = _require(state, "ln_final.weight", src).shape[0]
    vocab_size = _require(state, "token_embedding.weight", src).shape[0]
    context_length = _require(state, "positional_embedding", src).shape[0]
    text_proj = _require(state, "text_projection", src)
    if text_proj.shape[1] != projection_dim:
        raise ConversionError(
            f"{src}: text_projection maps to {text_proj.shape[1]} dims but visual.proj to {projection_dim}"
        )
    vis_layers, text_layers = _count_blocks(state, True), _count_blocks(state, False)
    if not vis_layers or not text_layers:
        raise ConversionError(
            f"{src}: no transformer blocks found (visual: {vis_layers}, text: {text_layers})"
        )
    vis_mlp = _require(state, "visual.transformer.resblocks.0.mlp.c_fc.weight", src).shape[0]
    text_mlp = _require(state, "transformer.resblocks.0.mlp.c_fc.weight", src).shape[0]
    if vision_heads is None:
        vision_heads = OPEN_CLIP_VISION_HEADS.get(vis_width, 0) if open_clip_heads else 0
        vision_heads = vision_heads or max(1, vis_width // 64)
    text_heads = text_heads or max(1, text_width // 64)
    for what, width, heads in (("vision", vis_width, vision_heads), ("text", text_width, text_heads)):
        if width % heads:
            raise ConversionError(f"{src}: {what} width {width} is not divisible by {heads} heads")
    text = dict(
        vocab_size=vocab_size,
        hidden_size=text_width,
        intermediate_size=text_mlp,
        num_hidden_layers=text_layers,
        num_attention_heads=text_heads,
        max_position_embeddings=context_length,
        hidden_act=activation,
        projection_dim=projection_dim,
        # CLIP pools at the end-of-text token, the highest id (OpenAI takes the argmax of the ids).
        bos_token_id=vocab_size - 2,
        eos_token_id=vocab_size - 1,
        pad_token_id=vocab_size - 1,
    )
    vision = dict(
        hidden_size=vis_width,
        intermediate_size=vis_mlp,
        num_hidden_layers=vis_layers,
        num_attention_heads=vision_heads,
        image_size=grid * patch,
        patch_size=patch,
        hidden_act=activation,
        projection_dim=projection_dim,
    )
    logit_scale = float(state["logit_scale"]) if "logit_scale" in state else 2.6592
    return CLIPConfig(
        text_config=text,
        vision_config=vision,
        projection_dim=projection_dim,
        logit_scale_init_value=logit_scale,
    )


def openai_to_hf_state_dict(state: dict[str, torch.Tensor], config, src: Path) -> dict[str, torch.Tensor]:
    """Rename (and split packed attention weights of) an OpenAI-layout state dict for HF CLIPModel.

    Raises ConversionError naming every missing and unexpected key: no silent partial loads.
    """
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    missing: list[str] = []

    def take(key: str) -> torch.Tensor | None:
        if key not in state:
            missing.append(key)
            return None
        used.add(key)
        return state[key].float()

    def put(dst: str, key: str, transform=None) -> None:
        t = take(key)
        if t is not None:
            out[dst] = transform(t) if transform else t

    put("vision_model.embeddings.class_embedding", "visual.class_embedding")
    put("vision_model.embeddings.patch_embedding.weight", "visual.conv1.weight")
    put("vision_model.embeddings.position_embedding.weight", "visual.positional_embedding")
    for p in ("weight", "bias"):
        put(f"vision_model.pre_layrnorm.{p}", f"visual.ln_pre.{p}")
        put(f"vision_model.post_layernorm.{p}", f"visual.ln_post.{p}")
        put(f"text_model.final_layer_norm.{p}", f"ln_final.{p}")
    put("visual_projection.weight", "visual.proj", lambda t: t.t().contiguous())
    put("text_projection.weight", "text_projection", lambda t: t.t().contiguous())
    put("text_model.embeddings.token_embedding.weight", "token_embedding.weight")
    put("text_model.embeddings.position_embedding.weight", "positional_embedding")
    if "logit_scale" in state:
        put("logit_scale", "logit_scale", lambda t: t.reshape(()))

    towers = (
        ("visual.transformer", "vision_model.encoder", config.vision_config.num_hidden_layers),
        ("transformer", "text_model.encoder", config.text_config.num_hidden_layers),
    )
    for src_prefix, dst_prefix, layers in towers:
        for n in range(layers):
            s, d = f"{src_prefix}.resblocks.{n}", f"{dst_prefix}.layers.{n}"
            for p in ("weight", "bias"):
                put(f"{d}.layer_norm1.{p}", f"{s}.ln_1.{p}")
                put(f"{d}.layer_norm2.{p}", f"{s}.ln_2.{p}")
                put(f"{d}.mlp.fc1.{p}", f"{s}.mlp.c_fc.{p}")
                put(f"{d}.mlp.fc2.{p}", f"{s}.mlp.c_proj.{p}")
                put(f"{d}.self_attn.out_proj.{p}", f"{s}.attn.out_proj.{p}")
                # nn.MultiheadAttention packs q, k, v along the output dimension, in that order.
                packed = take(f"{s}.attn.in_proj_{p}")
                if packed is not None:
                    for name, part in zip(("q", "k", "v"), packed.chunk(3, dim=0)):
                        out[f"{d}.self_attn.{name}_proj.{p}"] = part.contiguous()

    unexpected = sorted(set(state) - used - IGNORED_KEYS)
    if missing or unexpected:
        raise ConversionError(
            f"{src}: checkpoint does not match the CLIP layout: " + _key_report(missing, unexpected)
        )
    return out


def _key_report(missing: list[str], unexpected: list[str], limit: int = 12) -> str:
    parts = []
    for label, keys in (("missing keys", missing), ("unexpected keys", unexpected)):
        if keys:
            shown = ", ".join(keys[:limit]) + (
                f", ... ({len(keys) - limit} more)" if len(keys) > limit else ""
            )
            parts.append(f"{len(keys)} {label}: {shown}")
    return "; ".join(parts)


# ---------------------------------------------------------------------------- tokenizer
def load_tokenizer(source: str | Path):
    """A CLIP tokenizer from a directory (vocab.json + merges.txt, or HF files) or a hub id."""
    from transformers import AutoTokenizer, CLIPTokenizer

    source = str(source)
    path = Path(source)
    try:
        if path.is_dir() and not (path / "tokenizer_config.json").exists():
            return CLIPTokenizer.from_pretrained(source)
        return AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError, TypeError) as exc:
        hint = (
            "" if path.exists() else " (offline? pass --tokenizer DIR with CLIP's vocab.json and merges.txt)"
        )
        raise ConversionError(f"{source}: cannot load a CLIP tokenizer{hint}: {first_line(exc)}") from None


def _check_tokenizer(tokenizer, vocab_size: int, tokenizer_source: str) -> None:
    from prefalign.scoring.tokenizer_check import check_tokenizer

    check_tokenizer(tokenizer, vocab_size, tokenizer_source)
    if tokenizer.eos_token_id != vocab_size - 1:
        warnings.warn(
            f"{tokenizer_source}: end-of-text id {tokenizer.eos_token_id} is not the last id "
            f"({vocab_size - 1}); text pooling follows the tokenizer's end-of-text token",
            stacklevel=3,
        )


# ---------------------------------------------------------------------------- writing
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _prepare_out(out: Path, overwrite: bool) -> Path:
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ConversionError(f"{out}: already exists and is not empty (use --overwrite to replace it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))


def _publish(tmp: Path, out: Path) -> None:
    """Move a finished model directory into place; an interrupted run leaves ``out`` as it was.

    ``mkdtemp`` made ``tmp`` owner-only (0700); it gets ``mkdir``'s usual mode first.
    """
    publish_temp_dir(tmp)
    if out.exists():
        old = out.with_name(f".{out.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(out)


def save_model_dir(
    out: Path, model, tokenizer, spec: ScorerSpec, head=None, *, overwrite: bool = False
) -> Path:
    """Write a self-contained model directory atomically (temporary sibling, then rename)."""
    from safetensors.torch import save_file

    tmp = _prepare_out(out, overwrite)
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if head is not None:
            save_file({k: v.contiguous() for k, v in head.state_dict().items()}, tmp / HEAD_FILE)
            spec.head = {"type": head.head_type, "file": HEAD_FILE, "dims": head.dims}
        spec.save(tmp)
        _publish(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


# ---------------------------------------------------------------------------- entry point
def convert_checkpoint(
    family: str,
    src: str | Path,
    out: str | Path,
    *,
    tokenizer: str | Path | None = None,
    base: str | Path | None = None,
    vision_heads: int | None = None,
    text_heads: int | None = None,
    kind: str | None = None,
    preprocess: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Convert a foreign checkpoint into a prefalign model directory.

    Args:
        family: one of ``FAMILIES`` (``hps-v1``, ``openai-clip``, ``hps-v2``, ``hps-v2.1``,
            ``open-clip``, ``aesthetic``, ``pickscore``, ``hf-clip``).
        src: the checkpoint file (a directory or hub id for ``pickscore``/``hf-clip``).
        out: the model directory to write.
        tokenizer: a tokenizer directory or hub id (default: the family's usual hub tokenizer).
        base: the CLIP model the ``aesthetic`` head sits on (directory or hub id).
        vision_heads, text_heads: attention heads, when not width // 64 (or open_clip's table).
        kind: override the score kind (e.g. ``clip`` to score an HPS model as plain cosine).
        preprocess: override the family's preprocessing mode (``pad`` or ``center-crop``).
        overwrite: replace an existing model directory.

    Returns:
        The output directory.

    Raises:
        ConversionError: unknown family, unreadable or mismatched checkpoint, or ``out`` exists.
    """
    if family not in FAMILIES:
        raise ConversionError(f"unknown family {family!r}; expected one of {', '.join(FAMILIES)}")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    layout, default_kind, mode, activation, default_tokenizer = FAMILIES[family]
    out = Path(out)
    provenance: dict = {
        "converted_from": family,
        "source": Path(str(src)).name,
        "converted_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if layout == "imagereward":
        from prefalign.scoring.imagereward import convert_imagereward

        return convert_imagereward(
            Path(src),
            out,
            tokenizer=tokenizer,
            vision_heads=vision_heads,
            text_heads=text_heads,
            provenance=provenance,
            overwrite=overwrite,
        )
    if layout == "hpsv3":
        from prefalign.scoring.hpsv3 import convert_hpsv3

        if base is None:
            raise ConversionError(
                "--from hpsv3 needs --base: the Qwen2-VL-7B-Instruct directory (config, tokenizer); "
                "the release holds weights only"
            )
        return convert_hpsv3(
            Path(src), out, base=base, tokenizer=tokenizer, provenance=provenance, overwrite=overwrite
        )
    if layout == "mps":
        from prefalign.scoring.mps import convert_mps

        return convert_mps(
            Path(src),
            out,
            tokenizer=tokenizer,
            vision_heads=vision_heads,
            text_heads=text_heads,
            provenance=provenance,
            overwrite=overwrite,
        )
    if layout == "openai":
        src = Path(src)
        state = read_state_dict(src)
        provenance["sha256"] = _sha256(src)
        config = infer_clip_config(
            state,
            activation=activation,
            src=src,
            vision_heads=vision_heads,
            text_heads=text_heads,
            open_clip_heads=activation == "gelu",
        )
        hf_state = openai_to_hf_state_dict(state, config, src)
        tok_source = str(tokenizer or default_tokenizer)
        tok = load_tokenizer(tok_source)
        _check_tokenizer(tok, config.text_config.vocab_size, tok_source)
        config.text_config.eos_token_id = tok.eos_token_id
        model = _build_model(config, hf_state, src)
        head = None
    elif layout == "aesthetic":
        if base is None:
            raise ConversionError(
                "the aesthetic family needs --base: the CLIP ViT-L/14 model the MLP sits on"
            )
        src = Path(src)
        model, tok, head = _aesthetic(src, base)
        provenance.update(sha256=_sha256(src), base=str(base))
    else:
        from prefalign.scoring.load import HUB_TOKENIZERS, _load_clip

        # the tokenizer is checked there; PickScore's hub repo has none (its authors load laion's)
        model, tok = _load_clip(str(src), tokenizer=tokenizer or HUB_TOKENIZERS.get(str(src)))
        head = None
    spec = ScorerSpec(
        kind=kind or default_kind,
        preprocess=Preprocess(mode=preprocess or mode, size=model.config.vision_config.image_size),
        provenance=provenance,
    )
    save_model_dir(out, model, tok, spec, head, overwrite=overwrite)
    logger.info("wrote %s (%s, kind %s)", out, family, spec.kind)
    return out


def _build_model(config, hf_state: dict[str, torch.Tensor], src: Path):
    from transformers import CLIPModel

    with torch.device("meta"):
        model = CLIPModel(config)
    result = model.load_state_dict(hf_state, strict=False, assign=True)
    # Non-persistent buffers (position ids) are rebuilt; anything else missing is a bug.
    missing = [k for k in result.missing_keys if not k.endswith("position_ids")]
    if missing or result.unexpected_keys:
        raise ConversionError(
            f"{src}: internal mapping error: {_key_report(missing, result.unexpected_keys)}"
        )
    for module in (model.vision_model.embeddings, model.text_model.embeddings):
        n = module.position_ids.shape[-1]
        module.position_ids = torch.arange(n).expand((1, -1))
    return model.eval()


def _aesthetic(src: Path, base: str | Path):
    from prefalign.scoring.load import _load_clip

    state = read_state_dict(src)
    # The layout is read off the keys: linear (layers.0/2/4/6/7) or ReLU (layers.0/3/6/9/11).
    cls = next((c for c in AESTHETIC_HEADS if set(state) == c.expected_keys()), None)
    if cls is None:
        reports = [
            f"{c.head_type}: "
            + _key_report(sorted(c.expected_keys() - set(state)), sorted(set(state) - c.expected_keys()))
            for c in AESTHETIC_HEADS
        ]
        raise ConversionError(
            f"{src}: not a LAION aesthetic MLP layout (linear: layers.0/2/4/6/7, ReLU: "
            f"layers.0/3/6/9/11): " + " | ".join(reports)
        )
    head = cls(cls.dims_from_state_dict(state))
    try:
        head.load_state_dict({k: v.float() for k, v in state.items()})
    except RuntimeError as exc:
        raise ConversionError(f"{src}: inconsistent layer shapes ({first_line(exc)})") from None
    model, tok = _load_clip(str(base))
    if head.dims[0] != model.config.projection_dim:
        raise ConversionError(
            f"{src}: the MLP takes {head.dims[0]}-dim embeddings but the base {base} produces "
            f"{model.config.projection_dim}-dim ones (the LAION predictor needs CLIP ViT-L/14, 768)"
        )
    return model, tok, head


__all__ = ["FAMILIES", "SPEC_FILE", "ConversionError", "convert_checkpoint", "read_state_dict"]
