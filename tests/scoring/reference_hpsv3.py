"""An independent HPSv3 reference, written from the original code; imports nothing from prefalign.

Sources (MizzenAI/HPSv3): ``hpsv3/inference.py`` (``HPSv3RewardInferencer.prepare_batch`` and
``reward``), ``hpsv3/dataset/data_collator_qwen.py`` (``INSTRUCTION``,
``prompt_with_special_token``), ``hpsv3/model/qwen2vl_trainer.py`` (``Qwen2VLRewardModelBT``:
``rm_head`` and ``forward``), ``hpsv3/config/HPSv3_7B.yaml``; ``qwen_vl_utils``
(``smart_resize``, ``fetch_image``) and transformers' slow ``Qwen2VLImageProcessor`` /
``Qwen2VLProcessor`` / Qwen2-VL-Instruct chat template, as the original runs them.

The transformer blocks themselves are transformers' Qwen2-VL modules (the original's too), run
in float64; everything around them — image resizing, normalisation, patch order, the prompt
text, chat rendering, image-token expansion, the 1-D positions, the reward-token pooling and the
head — is re-implemented here from the sources above.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image
from torch import nn

# data_collator_qwen.py (verbatim, trailing spaces included)
INSTRUCTION = (
    "\nYou are tasked with evaluating a generated image based on Visual Quality and Text Alignment and give a "
    "overall score to estimate the human preference. Please provide a rating from 0 to 10, with 0 being the "
    "worst and 10 being the best. \n\n"
    "**Visual Quality:**  \n"
    "Evaluate the overall visual quality of the image. The following sub-dimensions should be considered:\n"
    "- **Reasonableness:** The image should not contain any significant biological or logical errors, such as "
    "abnormal body structures or nonsensical environmental setups.\n"
    "- **Clarity:** Evaluate the sharpness and visibility of the image. The image should be clear and easy to "
    "interpret, with no blurring or indistinct areas.\n"
    "- **Detail Richness:** Consider the level of detail in textures, materials, lighting, and other visual "
    "elements (e.g., hair, clothing, shadows).\n"
    "- **Aesthetic and Creativity:** Assess the artistic aspects of the image, including the color scheme, "
    "composition, atmosphere, depth of field, and the overall creative appeal. The scene should convey a sense "
    "of harmony and balance.\n"
    "- **Safety:** The image should not contain harmful or inappropriate content, such as political, violent, "
    "or adult material. If such content is present, the image quality and satisfaction score should be the "
    "lowest possible. \n\n"
    "**Text Alignment:**  \n"
    "Assess how well the image matches the textual prompt across the following sub-dimensions:\n"
    "- **Subject Relevance** Evaluate how accurately the subject(s) in the image (e.g., person, animal, object) "
    "align with the textual description. The subject should match the description in terms of number, "
    "appearance, and behavior.\n"
    "- **Style Relevance:** If the prompt specifies a particular artistic or stylistic style, evaluate how well "
    "the image adheres to this style.\n"
    "- **Contextual Consistency**: Assess whether the background, setting, and surrounding elements in the "
    "image logically fit the scenario described in the prompt. The environment should support and enhance the "
    "subject without contradictions.\n"
    "- **Attribute Fidelity**: Check if specific attributes mentioned in the prompt (e.g., colors, clothing, "
    "accessories, expressions, actions) are faithfully represented in the image. Minor deviations may be "
    "acceptable, but critical attributes should be preserved.\n"
    "- **Semantic Coherence**: Evaluate whether the overall meaning and intent of the prompt are captured in "
    "the image. The generated content should not introduce elements that conflict with or distort the "
    "original description.\n"
    "Textual prompt - {text_prompt}\n\n\n"
)
PROMPT_WITH_SPECIAL_TOKEN = "\nPlease provide the overall ratings of this image: <|Reward|>\n\nEND\n"
MAX_PIXELS = MIN_PIXELS = 256 * 28 * 28
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# Qwen2-VL-7B-Instruct chat_template (the image/text branches used here).
QWEN2VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant."
    "<|im_end|>\n{% endif %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n{% else %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def smart_resize(height, width, factor=28, min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS):
    """qwen_vl_utils.vision_process.smart_resize."""
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = math.floor(height / beta / factor) * factor
        w_bar = math.floor(width / beta / factor) * factor
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def fetch_image(image: Image.Image) -> Image.Image:
    """qwen_vl_utils.fetch_image: RGB, then ``image.resize((w, h))`` (Pillow's default filter)."""
    image = image.convert("RGB")
    h, w = smart_resize(image.height, image.width)
    return image.resize((w, h))


def image_processor(image: Image.Image):
    """Slow Qwen2VLImageProcessor: rescale 1/255, CLIP normalise, tile to 2 frames, patch order."""
    arr = np.asarray(image).astype(np.float32) * np.float32(1 / 255)
    arr = ((arr - np.array(CLIP_MEAN, np.float32)) / np.array(CLIP_STD, np.float32)).transpose(2, 0, 1)
    patches = np.tile(arr[None], (2, 1, 1, 1))
    c, gh, gw = arr.shape[0], arr.shape[1] // 14, arr.shape[2] // 14
    patches = patches.reshape(1, 2, c, gh // 2, 2, 14, gw // 2, 2, 14).transpose(0, 3, 6, 4, 7, 2, 1, 5, 8)
    flat = patches.reshape(gh * gw, c * 2 * 14 * 14)
    return torch.from_numpy(flat), torch.tensor([[1, gh, gw]])


def input_ids(tokenizer, prompt: str, n_image_tokens: int) -> torch.Tensor:
    """The message of prepare_batch, rendered by the chat template; Qwen2VLProcessor then expands
    each ``<|image_pad|>`` to the merged patch count before tokenising."""
    message = [
        {
            "role": "user",
            "content": [
                {"type": "image", "image": "IMG", "min_pixels": MAX_PIXELS, "max_pixels": MAX_PIXELS},
                {"type": "text", "text": INSTRUCTION.format(text_prompt=prompt) + PROMPT_WITH_SPECIAL_TOKEN},
            ],
        }
    ]
    text = tokenizer.apply_chat_template(
        message, tokenize=False, add_generation_prompt=True, chat_template=QWEN2VL_CHAT_TEMPLATE
    )
    text = text.replace("<|image_pad|>", "<|placeholder|>" * n_image_tokens).replace(
        "<|placeholder|>", "<|image_pad|>"
    )
    return tokenizer(text, return_tensors="pt")["input_ids"]


def rm_head(state: dict[str, torch.Tensor]) -> nn.Sequential:
    """Qwen2VLRewardModelBT's ranknet head without rm_head_kwargs, loaded from ``rm_head.*``."""
    hidden = state["rm_head.0.weight"].shape[1]
    head = nn.Sequential(
        nn.Linear(hidden, 1024), nn.ReLU(), nn.Dropout(0.05), nn.Linear(1024, 16), nn.ReLU(), nn.Linear(16, 2)
    )
    head.load_state_dict({k[len("rm_head.") :]: v for k, v in state.items() if k.startswith("rm_head.")})
    return head.double().eval()


@torch.no_grad()
def reward(model, head, tokenizer, image: Image.Image, prompt: str, *, positions_3d: bool = False):
    """``(mu, sigma)`` float64 as Qwen2VLRewardModelBT.forward on one image.

    ``model`` is a float64 transformers-5 ``Qwen2VLForConditionalGeneration`` with the release's
    weights. ``positions_3d=True`` instead runs the stock forward (Qwen2-VL's 3-D rotary
    positions from ``get_rope_index``), which the original does NOT do.
    """
    pixel_values, grid = image_processor(fetch_image(image))
    ids = input_ids(tokenizer, prompt, int(grid.prod()) // 4)
    image_id = tokenizer.convert_tokens_to_ids("<|image_pad|>")
    reward_id = tokenizer.convert_tokens_to_ids("<|Reward|>")
    if positions_3d:
        out = model(
            input_ids=ids,
            pixel_values=pixel_values.double(),
            image_grid_thw=grid,
            mm_token_type_ids=(ids == image_id).long(),  # what Qwen2VLProcessor returns: 1 = image
            output_hidden_states=True,
            use_cache=False,
        )
        hidden = out.hidden_states[-1]
    else:
        embeds = model.model.language_model.embed_tokens(ids)
        image_embeds = model.model.visual(pixel_values.double(), grid_thw=grid).pooler_output
        mask = (ids == image_id).unsqueeze(-1).expand_as(embeds)
        embeds = embeds.masked_scatter(mask, image_embeds.to(embeds.dtype))
        hidden = model.model.language_model(
            input_ids=None, position_ids=None, inputs_embeds=embeds, use_cache=False
        ).last_hidden_state
    logits = head(hidden.double())
    return logits[ids == reward_id].view(1, -1)[0]
