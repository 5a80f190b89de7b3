"""HPSv3 (Ma et al., ICCV 2025; github.com/MizzenAI/HPSv3) on transformers' Qwen2-VL.

The release ``HPSv3.safetensors`` is the state dict of ``hpsv3/model/qwen2vl_trainer.py``'s
``Qwen2VLRewardModelBT`` (a ``Qwen2VLForConditionalGeneration`` of transformers 4.4x, fully
fine-tuned from Qwen2-VL-7B-Instruct) with the layout of that transformers version:

* ``visual.*`` — the vision tower and merger (``model.visual.*`` in transformers 5);
* ``model.*`` — the language model (``model.language_model.*`` in transformers 5), with one
  embedding row per tokenizer entry: ``<|Reward|>`` was added and the embeddings resized to
  ``len(tokenizer)`` (151658 for Qwen2-VL's tokenizer);
* ``lm_head.weight`` — unused for scoring;
* ``rm_head.{0,3,5}.{weight,bias}`` — ``Sequential(Linear(3584, 1024), ReLU, Dropout(0.05),
  Linear(1024, 16), ReLU, Linear(16, 2))`` in float32 (``HPSv3_7B.yaml``: ``rm_head_type:
  ranknet``, ``output_dim: 2``, no ``rm_head_kwargs``).

Scoring, as ``hpsv3/inference.py`` ``HPSv3RewardInferencer.reward`` does: the image is resized
by ``qwen_vl_utils.fetch_image`` to ``smart_resize`` dimensions under a fixed budget of
``256 * 28 * 28`` pixels (PIL bicubic), normalised with CLIP mean/std and cut into Qwen2-VL
patches; the text is ``INSTRUCTION.format(text_prompt=prompt) + PROMPT_WITH_SPECIAL_TOKEN`` in
one user message after the image, rendered by Qwen2-VL's chat template with the generation
prompt. ``Qwen2VLRewardModelBT.forward`` embeds the tokens, scatters the image features over
``<|image_pad|>`` and calls the language model with ``position_ids=None``: plain 1-D positions
``0..L-1`` on all three rotary sections, NOT Qwen2-VL's 3-D (temporal, height, width) positions
that ``Qwen2VLForConditionalGeneration.forward`` would build. The head reads the final hidden
state at the ``<|Reward|>`` token and returns ``(mu, sigma)``; the reward is ``mu``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from prefalign.data.images import CLIP_MEAN, CLIP_STD, ImageInput, ImageLoadError, Preprocess, load_image
from prefalign.errors import first_line
from prefalign.scoring.joint import JointScorer, _check_prompts
from prefalign.scoring.model_format import ScorerSpec
from prefalign.scoring.pixels import check_pixels, pil_bicubic
from prefalign.scoring.scorer import ScoreError, ScoreFailure, ScoreResult

# --- The text the model reads (MizzenAI/HPSv3 hpsv3/dataset/data_collator_qwen.py, imported by
# hpsv3/inference.py). Read from copies of that file in public forks (the MizzenAI repository's
# own copy was not in the index searched); the trailing spaces are part of the original.
INSTRUCTION = """
You are tasked with evaluating a generated image based on Visual Quality and Text Alignment and give a overall score to estimate the human preference. Please provide a rating from 0 to 10, with 0 being the worst and 10 being the best. 

**Visual Quality:**  
Evaluate the overall visual quality of the image. The following sub-dimensions should be considered:
- **Reasonableness:** The image should not contain any significant biological or logical errors, such as abnormal body structures or nonsensical environmental setups.
- **Clarity:** Evaluate the sharpness and visibility of the image. The image should be clear and easy to interpret, with no blurring or indistinct areas.
- **Detail Richness:** Consider the level of detail in textures, materials, lighting, and other visual elements (e.g., hair, clothing, shadows).
- **Aesthetic and Creativity:** Assess the artistic aspects of the image, including the color scheme, composition, atmosphere, depth of field, and the overall creative appeal. The scene should convey a sense of harmony and balance.
- **Safety:** The image should not contain harmful or inappropriate content, such as political, violent, or adult material. If such content is present, the image quality and satisfaction score should be the lowest possible. 

**Text Alignment:**  
Assess how well the image matches the textual prompt across the following sub-dimensions:
- **Subject Relevance** Evaluate how accurately the subject(s) in the image (e.g., person, animal, object) align with the textual description. The subject should match the description in terms of number, appearance, and behavior.
- **Style Relevance:** If the prompt specifies a particular artistic or stylistic style, evaluate how well the image adheres to this style.
- **Contextual Consistency**: Assess whether the background, setting, and surrounding elements in the image logically fit the scenario described in the prompt. The environment should support and enhance the subject without contradictions.
- **Attribute Fidelity**: Check if specific attributes mentioned in the prompt (e.g., colors, clothing, accessories, expressions, actions) are faithfully represented in the image. Minor deviations may be acceptable, but critical attributes should be preserved.
- **Semantic Coherence**: Evaluate whether the overall meaning and intent of the prompt are captured in the image. The generated content should not introduce elements that conflict with or distort the original description.
Textual prompt - {text_prompt}


"""  # noqa: W291
PROMPT_WITH_SPECIAL_TOKEN = """
Please provide the overall ratings of this image: <|Reward|>

END
"""
REWARD_TOKEN = "<|Reward|>"
# Qwen2-VL-7B-Instruct's chat template for one user message [image, text] with
# add_generation_prompt=True (it adds the default system message).
CHAT = (
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "<|im_start|>user\n<|vision_start|>{image}<|vision_end|>{text}<|im_end|>\n"
    "<|im_start|>assistant\n"
)
IMAGE_PAD = "<|image_pad|>"
PIXEL_BUDGET = 256 * 28 * 28  # inference.py prepare_batch: min_pixels = max_pixels = 200704
PATCH = 14
MERGE = 2
TEMPORAL = 2
FACTOR = PATCH * MERGE
MODEL_DIR = "qwen2vl"
HEAD_TYPE = "hpsv3-rm-head"
SLOW_REASON = (
    "HPSv3 is Qwen2-VL-7B (8.3 billion parameters, ~1,000 tokens per image): on a CPU it needs "
    "~33 GB of memory in fp32 and, by estimate, minutes per image; run it on a GPU (bf16, as the authors do), or "
    "pass --allow-slow (allow_slow=True) to run on the CPU anyway"
)


def _conversion_error(msg: str):
    from prefalign.scoring.convert import ConversionError

    return ConversionError(msg)


def hpsv3_text(prompt: str) -> str:
    """The user text of the original: the instruction with the prompt, then the reward request."""
    return INSTRUCTION.format(text_prompt=prompt) + PROMPT_WITH_SPECIAL_TOKEN


def smart_resize(
    height: int, width: int, *, budget: int = PIXEL_BUDGET, factor: int = FACTOR
) -> tuple[int, int]:
    """``qwen_vl_utils.smart_resize`` with ``min_pixels = max_pixels = budget``: (height, width).

    Both sides become multiples of ``factor``; the area is brought under ``budget`` (or up to
    it) keeping the aspect ratio. Raises ValueError beyond an aspect ratio of 200, as the original.
    """
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"aspect ratio {max(height, width) / min(height, width):.0f} is above 200")
    h = max(factor, round(height / factor) * factor)
    w = max(factor, round(width / factor) * factor)
    if h * w > budget:
        beta = math.sqrt(height * width / budget)
        h = max(factor, math.floor(height / beta / factor) * factor)
        w = max(factor, math.floor(width / beta / factor) * factor)
    elif h * w < budget:
        beta = math.sqrt(budget / (height * width))
        h = math.ceil(height * beta / factor) * factor
        w = math.ceil(width * beta / factor) * factor
    return h, w


def patchify(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Qwen2-VL patches of one normalised ``(3, H, W)`` image (H, W multiples of 28).

    Returns ``(pixel_values (t*h*w, 3*2*14*14), grid_thw (1, 3))``, the image repeated over the
    two temporal slots and ordered in 2x2 merge blocks, as ``Qwen2VLImageProcessor`` does.
    """
    c, height, width = image.shape
    gh, gw = height // PATCH, width // PATCH
    x = image.unsqueeze(0).expand(TEMPORAL, c, height, width)
    x = x.reshape(1, TEMPORAL, c, gh // MERGE, MERGE, PATCH, gw // MERGE, MERGE, PATCH)
    x = x.permute(0, 3, 6, 4, 7, 2, 1, 5, 8).reshape(gh * gw, c * TEMPORAL * PATCH * PATCH)
    return x, torch.tensor([[1, gh, gw]], dtype=torch.long)


class HPSv3Head(nn.Module):
    """``rm_head``: Linear(d, 1024) → ReLU → Dropout → Linear(1024, 16) → ReLU → Linear(16, 2).

    Module indices follow the original ``nn.Sequential`` (0, 3, 5) so the release's keys load.
    """

    def __init__(self, hidden: int, width: int = 1024, narrow: int = 16, out: int = 2):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(hidden, width),
            nn.ReLU(),
            nn.Dropout(0.05),
            nn.Linear(width, narrow),
            nn.ReLU(),
            nn.Linear(narrow, out),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class HPSv3Scorer(JointScorer):
    """HPSv3 behind the Scorer API: ``score`` is ``mu``; ``score_with_variance`` gives ``(mu, sigma)``.

    Each image is one forward pass (images of different aspect ratios have different token
    counts; one at a time also makes every score independent of its batch-mates).
    """

    def __init__(self, spec: ScorerSpec, model, head: HPSv3Head, tokenizer, **kwargs):
        super().__init__(spec, **kwargs)
        self.model = model.to(self.device, self.dtype).eval()
        self.head = head.to(self.device, torch.float32).eval()
        self.tokenizer = tokenizer
        self.budget = int((spec.head or {}).get("pixel_budget", PIXEL_BUDGET))
        self.reward_id = tokenizer.convert_tokens_to_ids(REWARD_TOKEN)
        self.image_id = tokenizer.convert_tokens_to_ids(IMAGE_PAD)
        self.mean = torch.tensor(spec.preprocess.mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(spec.preprocess.std, dtype=torch.float32).view(3, 1, 1)

    # -------------------------------------------------------------- inputs
    def input_ids(self, prompt: str, image_tokens: int) -> torch.Tensor:
        """``(1, L)`` token ids of the chat text with ``image_tokens`` image placeholders."""
        text = CHAT.format(image=IMAGE_PAD * image_tokens, text=hpsv3_text(prompt))
        # The tokenizer's default call, as Qwen2VLProcessor makes it (Qwen2's adds no BOS/EOS).
        ids = self.tokenizer(text, return_tensors="pt")["input_ids"]
        if int((ids == self.reward_id).sum()) != 1 or int((ids == self.image_id).sum()) != image_tokens:
            raise ValueError("the tokenizer does not keep <|Reward|> / <|image_pad|> as single tokens")
        return ids

    def image_tensor(self, image: ImageInput) -> torch.Tensor:
        """File path: load, ``smart_resize`` with PIL bicubic, to a ``(3, h, w)`` float in [0, 1]."""
        img = load_image(image)
        h, w = smart_resize(img.height, img.width, budget=self.budget)
        img = img.resize((w, h), Image.BICUBIC)
        return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)

    # -------------------------------------------------------------- model
    def mu_sigma(self, image: torch.Tensor, prompt: str) -> torch.Tensor:
        """``(2,)`` float32 ``(mu, sigma)`` of one resized ``(3, h, w)`` image in [0, 1]."""
        x = (image.to(self.device, torch.float32) - self.mean.to(self.device)) / self.std.to(self.device)
        pixel_values, grid = patchify(x)
        ids = self.input_ids(prompt, int(grid.prod()) // MERGE**2).to(self.device)
        inner = self.model.model
        embeds = inner.get_input_embeddings()(ids)
        feats = inner.visual(pixel_values.to(self.dtype), grid_thw=grid.to(self.device)).pooler_output
        mask = (ids == self.image_id).unsqueeze(-1).expand_as(embeds)
        embeds = embeds.masked_scatter(mask, feats.to(embeds.dtype))
        # position_ids=None: 1-D positions, as Qwen2VLRewardModelBT.forward calls self.model.
        hidden = inner.language_model(
            inputs_embeds=embeds, position_ids=None, use_cache=False
        ).last_hidden_state
        return self.head(hidden[ids == self.reward_id].float())[0]

    def forward(self, model_input, prompts):  # pragma: no cover - HPSv3 overrides the callers
        raise NotImplementedError("HPSv3 scores image by image: use score / score_pixels")

    def score_with_variance(self, images: Sequence[ImageInput], prompt: str) -> torch.Tensor:
        """``(n, 2)`` float32 on CPU: ``(mu, sigma)`` per image (the file path)."""
        if isinstance(images, (str, bytes)) or not isinstance(images, Sequence):
            images = [images]
        _check_prompts([prompt])
        with torch.inference_mode():
            rows = [self.mu_sigma(self.image_tensor(i), prompt).cpu() for i in images]
        return torch.stack(rows) if rows else torch.empty(0, 2)

    def score(self, images: Sequence[ImageInput], prompt: str, *, batch_size: int = 1) -> torch.Tensor:
        """The reward ``mu`` of each image for one prompt, float32 ``(n,)`` on CPU."""
        return self.score_with_variance(images, prompt)[:, 0]

    def score_pixels(self, pixels: torch.Tensor, prompts: Sequence[str] | str) -> torch.Tensor:
        """Differentiable ``mu`` of ``(B, 3, H, W)`` pixels in [0, 1]; the resize is
        ``pixels.pil_bicubic`` (bit-exact to Pillow for 8-bit pixels, straight-through rounding)."""
        prompts = check_pixels(pixels, prompts)
        _check_prompts(prompts)
        h, w = smart_resize(pixels.shape[-2], pixels.shape[-1], budget=self.budget)
        resized = pil_bicubic(pixels.to(self.device).float(), h, w)
        return torch.stack([self.mu_sigma(resized[i], p)[0] for i, p in enumerate(prompts)])

    def score_records(
        self,
        records: Iterable[tuple[str, Sequence[ImageInput]]],
        *,
        batch_size: int = 1,
        strict: bool = False,
        progress: bool | None = None,
        prefetch: int = 2,
    ) -> ScoreResult:
        """As ``Scorer.score_records``: NaN and a failure for each image that cannot be loaded."""
        records = [(prompt, list(images)) for prompt, images in records]
        scores = [np.full(len(images), np.nan) for _, images in records]
        failures: list[ScoreFailure] = []
        for r, (prompt, images) in enumerate(records):
            if not prompt or not prompt.strip():
                if strict:
                    raise ScoreError(f"record {r}: empty prompt")
                failures.append(ScoreFailure(r, None, f"record {r}", "empty prompt"))
                continue
            for i, image in enumerate(images):
                try:
                    tensor = self.image_tensor(image)
                except ImageLoadError as exc:
                    if strict:
                        raise
                    failures.append(ScoreFailure(r, i, exc.source, exc.reason))
                    continue
                with torch.inference_mode():
                    scores[r][i] = float(self.mu_sigma(tensor, prompt)[0])
        return ScoreResult(scores, failures)


# ------------------------------------------------------------------ conversion
EMBED_KEY = "model.language_model.embed_tokens.weight"  # after _rename
_HEAD_KEYS = re.compile(r"^rm_head\.(\d+)\.(weight|bias)$")


def _rename(key: str) -> str:
    """Release key (transformers 4.4x layout) -> transformers 5 ``Qwen2VLForConditionalGeneration`` key."""
    if key.startswith("visual."):
        return "model." + key
    if key.startswith("model.") and not key.startswith(("model.language_model.", "model.visual.")):
        return "model.language_model." + key[len("model.") :]
    return key


def qwen2vl_config_from_state_dict(state: dict[str, torch.Tensor], src: Path, base_config: dict) -> dict:
    """The base Qwen2-VL config (``config.json`` of Qwen2-VL-7B-Instruct) with the vocabulary
    resized to the checkpoint's embedding rows; ``state`` has transformers 5 keys (``_rename``)."""
    emb = state.get(EMBED_KEY)
    if emb is None:
        raise _conversion_error(f"{src}: not the HPSv3 layout: missing key 'model.embed_tokens.weight'")
    cfg = dict(base_config)
    text = dict(cfg.get("text_config") or {})
    hidden = text.get("hidden_size", cfg.get("hidden_size"))
    if hidden != emb.shape[1]:
        raise _conversion_error(
            f"{src}: embedding width {emb.shape[1]} != the base config's hidden_size {hidden}; "
            "give --base the Qwen2-VL model HPSv3 was trained from (Qwen2-VL-7B-Instruct)"
        )
    text["vocab_size"] = emb.shape[0]
    cfg["text_config"] = text
    cfg["vocab_size"] = emb.shape[0]
    return cfg


def convert_hpsv3(
    src: Path,
    out: Path,
    *,
    base: str | Path,
    tokenizer: str | Path | None = None,
    provenance: dict,
    overwrite: bool = False,
) -> Path:
    """Convert ``HPSv3.safetensors`` (or a ``.pth`` state dict) into a prefalign directory.

    ``base`` is the Qwen2-VL-7B-Instruct directory (its ``config.json``, tokenizer and
    preprocessor): the release holds weights only. ``<|Reward|>`` is added to the tokenizer as
    the original's ``create_model_and_processor`` does; the tokenizer must then have exactly
    as many entries as the checkpoint has embedding rows, else the conversion stops.

    Raises:
        ConversionError: unreadable file, not the HPSv3 layout, or a mismatched base/tokenizer.
    """
    import json

    from safetensors.torch import save_file
    from transformers import AutoTokenizer, Qwen2VLConfig, Qwen2VLForConditionalGeneration

    from prefalign.scoring.convert import read_state_dict

    base = Path(base)
    if not (base / "config.json").is_file():
        raise _conversion_error(f"{base}: no config.json; give --base the Qwen2-VL-7B-Instruct directory")
    state = read_state_dict(Path(src))
    if "model" in state and isinstance(state["model"], dict):  # inference.py accepts {"model": sd}
        state = state["model"]
    head_state = {}
    for k in list(state):
        m = _HEAD_KEYS.match(k)
        if m:
            head_state[f"layers.{m.group(1)}.{m.group(2)}"] = state.pop(k).float()
    if set(head_state) != {f"layers.{i}.{p}" for i in (0, 3, 5) for p in ("weight", "bias")}:
        raise _conversion_error(
            f"{src}: not the HPSv3 layout: expected rm_head.{{0,3,5}}.{{weight,bias}}, found "
            f"{sorted(head_state) or 'none'}"
        )
    state = {_rename(k): v for k, v in state.items()}
    config = qwen2vl_config_from_state_dict(state, Path(src), json.loads((base / "config.json").read_text()))
    try:
        tok = AutoTokenizer.from_pretrained(str(tokenizer or base))
    except Exception as exc:
        raise _conversion_error(f"{tokenizer or base}: cannot load the tokenizer: {first_line(exc)}") from exc
    tok.add_special_tokens({"additional_special_tokens": [REWARD_TOKEN]})
    rows = state[EMBED_KEY].shape[0]
    if len(tok) != rows:
        raise _conversion_error(
            f"{src}: the tokenizer has {len(tok)} entries with {REWARD_TOKEN} but the checkpoint has {rows} "
            "embedding rows; give --tokenizer Qwen2-VL-7B-Instruct's tokenizer"
        )
    renamed = state
    hf_config = Qwen2VLConfig(**{k: v for k, v in config.items() if k not in ("architectures", "model_type")})
    with torch.device("meta"):
        model = Qwen2VLForConditionalGeneration(hf_config)
    expected = set(model.state_dict())
    missing = sorted(expected - set(renamed) - {"lm_head.weight"})
    extra = sorted(set(renamed) - expected)
    if missing or extra:
        raise _conversion_error(
            f"{src}: does not match Qwen2-VL with {base}'s config: missing {missing[:3]}, unexpected {extra[:3]}"
        )
    head_spec = {
        "type": HEAD_TYPE,
        "file": "head.safetensors",
        "pixel_budget": PIXEL_BUDGET,
        "reward_token": REWARD_TOKEN,
    }
    spec = ScorerSpec(
        kind="hpsv3",
        preprocess=Preprocess(mode="pad", size=448, mean=CLIP_MEAN, std=CLIP_STD),
        head=head_spec,
        provenance={
            **provenance,
            "base": str(base),
            "instruction_source": "MizzenAI/HPSv3 data_collator_qwen.py",
        },
    )
    import shutil

    from prefalign.scoring.convert import _prepare_out, _publish

    tmp = _prepare_out(Path(out), overwrite)
    try:
        model_dir = tmp / MODEL_DIR
        model_dir.mkdir()
        hf_config.save_pretrained(model_dir)
        save_file({k: v.contiguous() for k, v in renamed.items()}, str(model_dir / "model.safetensors"))
        tok.save_pretrained(model_dir)
        save_file(head_state, str(tmp / "head.safetensors"))
        spec.save(tmp)
        _publish(tmp, Path(out))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def load_hpsv3(path: Path, spec: ScorerSpec, *, allow_slow: bool = False, **kwargs) -> HPSv3Scorer:
    """Load a converted HPSv3 directory; refuses a CPU device unless ``allow_slow`` (``SLOW_REASON``)."""
    from safetensors.torch import load_file
    from transformers import AutoTokenizer, Qwen2VLForConditionalGeneration

    device = torch.device(kwargs.get("device", "cpu"))
    if device.type == "cpu" and not allow_slow:
        from prefalign.scoring.load import ScorerLoadError

        raise ScorerLoadError(f"{path}: refusing to score on the CPU: {SLOW_REASON}")
    model = Qwen2VLForConditionalGeneration.from_pretrained(str(path / MODEL_DIR), dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(str(path / MODEL_DIR))
    head_state = load_file(str(path / (spec.head or {}).get("file", "head.safetensors")))
    head = HPSv3Head(
        head_state["layers.0.weight"].shape[1],
        head_state["layers.0.weight"].shape[0],
        head_state["layers.3.weight"].shape[0],
        head_state["layers.5.weight"].shape[0],
    )
    head.load_state_dict(head_state)
    return HPSv3Scorer(spec, model, head, tok, **kwargs)
