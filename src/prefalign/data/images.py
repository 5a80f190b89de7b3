"""Safe image loading and the CLIP preprocessing that travels with each scorer.

Two preprocessing modes exist because the originals differ:

* ``pad`` — HPS v2 (and the HPS paper's training): bicubic resize of the longest edge to the input size, then centred zero
  (black) padding of the shorter side (open_clip's ``ResizeMaxSize``).
* ``center-crop`` — OpenAI CLIP, HPS v1's released scoring code, PickScore, the LAION
  aesthetic predictor: bicubic resize of
  the shortest edge to the input size, then a centre crop (torchvision's ``Resize`` +
  ``CenterCrop`` arithmetic).

Both finish with ``ToTensor`` + ``Normalize(mean, std)``. The arithmetic (rounding of sizes and
offsets) follows the originals so that scores match them exactly.
"""

from __future__ import annotations

import io
import sys
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias, cast

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from prefalign.errors import PrefalignError

# OpenAI CLIP's normalisation constants; open_clip, HPS v1/v2, PickScore and the LAION aesthetic
# predictor all use them too.
CLIP_MEAN: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)

# PIL's own default limit (about 89.5 megapixels): larger files are treated as decompression bombs.
DEFAULT_MAX_PIXELS = 89_478_485

PREPROCESS_MODES = ("pad", "center-crop")

# torch loads only when a tensor is made: dataset tools, the annotation app and the command line
# use this module without paying torch's import time.
if TYPE_CHECKING:
    import torch

    ImageInput: TypeAlias = str | Path | Image.Image | torch.Tensor | np.ndarray | bytes
else:
    ImageInput = Any


def _is_tensor(obj: Any) -> bool:
    torch = sys.modules.get("torch")  # if torch was never imported, obj cannot be a tensor
    return torch is not None and isinstance(obj, torch.Tensor)


class ImageLoadError(PrefalignError, ValueError):
    """An image that cannot be used, with the file it came from and the reason."""

    def __init__(self, source: str, reason: str):
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: {reason}")


def _describe(src: Any) -> str:
    if isinstance(src, (str, Path)):
        return str(src)
    return f"<{type(src).__name__}>"


def load_image(src: ImageInput, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open an image from a path, bytes, a PIL image, an array or a tensor and return it as RGB.

    EXIF orientation is applied. Tensors and arrays are ``(C, H, W)`` or ``(H, W, C)``
    (``(H, W)`` for grey), either uint8 or floats in [0, 1].

    Raises:
        ImageLoadError: missing file, empty file, unknown format, corrupt or truncated data,
            or a decompression bomb (more than ``max_pixels`` pixels).
    """
    name = _describe(src)
    if isinstance(src, Image.Image):
        img = src
    elif isinstance(src, np.ndarray) or _is_tensor(src):
        return _array_to_pil(src, name)
    else:
        if isinstance(src, bytes):
            if not src:
                raise ImageLoadError(name, "empty image data (0 bytes)")
            fp: Any = io.BytesIO(src)
        else:
            path = Path(src)
            if not path.exists():
                raise ImageLoadError(name, "file not found")
            if path.is_dir():
                raise ImageLoadError(name, "is a directory, not an image file")
            if path.stat().st_size == 0:
                raise ImageLoadError(name, "empty file (0 bytes)")
            fp = path
        img = _open_checked(fp, name, max_pixels)
    try:
        img = ImageOps.exif_transpose(img)
    except Exception as exc:  # broken EXIF blocks must not sink an otherwise fine image
        warnings.warn(f"{name}: ignoring unreadable EXIF orientation ({exc})", stacklevel=2)
    return to_rgb(img)


def _open_checked(fp: Any, name: str, max_pixels: int | None) -> Image.Image:
    with warnings.catch_warnings():
        # PIL only warns between 1x and 2x its limit; a bomb is an error here.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(fp)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageLoadError(name, f"decompression bomb refused ({exc})") from None
        except UnidentifiedImageError:
            raise ImageLoadError(name, "not a recognised image format") from None
        except OSError as exc:
            raise ImageLoadError(name, f"cannot open image ({exc})") from None
        width, height = img.size
        if max_pixels is not None and width * height > max_pixels:
            raise ImageLoadError(
                name, f"decompression bomb refused: {width}x{height} pixels exceeds the limit of {max_pixels}"
            )
        try:
            img.load()
        except (OSError, SyntaxError, ValueError) as exc:
            raise ImageLoadError(name, f"corrupt or truncated image data ({exc})") from None
    return img


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB.

    Alpha is dropped without compositing, as ``image.convert("RGB")`` in OpenAI CLIP, open_clip
    and Hugging Face processors does, so scores match the originals. 16- and 32-bit integer
    images are rescaled to 8 bits rather than clipped.
    """
    mode = img.mode
    if mode == "RGB":
        return img
    if mode.startswith("I;16") or mode in ("I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        if mode.startswith("I;16") or (mode == "I" and arr.max(initial=0) > 255):
            arr = arr / 257.0
        elif mode == "F" and arr.max(initial=0) <= 1.0:
            arr = arr * 255.0
        grey = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), mode="L")
        return grey.convert("RGB")
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")  # avoids PIL's warning about byte transparency in palettes
    return img.convert("RGB")


def _array_to_pil(arr: torch.Tensor | np.ndarray, name: str) -> Image.Image:
    a = cast(Any, arr).detach().cpu().numpy() if _is_tensor(arr) else np.asarray(arr)
    if a.ndim == 3 and a.shape[0] in (1, 3, 4) and a.shape[-1] not in (1, 3, 4):
        a = np.transpose(a, (1, 2, 0))
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (3, 4)):
        raise ImageLoadError(name, f"array of shape {tuple(arr.shape)} is not an image")
    if a.dtype != np.uint8:
        if not np.issubdtype(a.dtype, np.floating):
            raise ImageLoadError(name, f"array dtype {a.dtype} must be uint8 or float in [0, 1]")
        a = np.clip(np.rint(a.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)
    return to_rgb(Image.fromarray(a))


@dataclass(frozen=True)
class Preprocess:
    """How a scorer turns an RGB image into its input tensor. Saved with every model."""

    mode: str = "pad"
    size: int = 224
    mean: tuple[float, ...] = field(default=CLIP_MEAN)
    std: tuple[float, ...] = field(default=CLIP_STD)

    def __post_init__(self) -> None:
        if self.mode not in PREPROCESS_MODES:
            raise ValueError(f"unknown preprocessing mode {self.mode!r}; expected one of {PREPROCESS_MODES}")
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocess:
        return cls(**{k: d[k] for k in ("mode", "size", "mean", "std") if k in d})

    def resize(self, img: Image.Image) -> Image.Image:
        """Resize (and pad or crop) an RGB image to ``size`` x ``size``."""
        return pad_to_square(img, self.size) if self.mode == "pad" else resize_center_crop(img, self.size)

    def to_tensor(self, img: Image.Image) -> torch.Tensor:
        """Normalise a ``size`` x ``size`` RGB image into a float32 ``(3, size, size)`` tensor."""
        arr = np.asarray(img, dtype=np.float32) / 255.0
        arr = (arr - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        import torch

        return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))

    def __call__(self, src: ImageInput, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> torch.Tensor:
        """Load (if needed) and preprocess one image into a ``(3, size, size)`` tensor."""
        return self.to_tensor(self.resize(load_image(src, max_pixels=max_pixels)))

    def batch(self, sources: Sequence[ImageInput]) -> torch.Tensor:
        """Preprocess several images into a ``(n, 3, size, size)`` tensor."""
        import torch

        return torch.stack([self(s) for s in sources])


def pad_to_square(img: Image.Image, size: int) -> Image.Image:
    """open_clip ``ResizeMaxSize``: longest edge to ``size`` (bicubic), centred black padding.

    Unlike open_clip, padding is applied even when no resize was needed, so a non-square
    image whose longest edge already equals ``size`` still becomes square.
    """
    width, height = img.size
    scale = size / float(max(width, height))
    new_w, new_h = round(width * scale), round(height * scale)
    if (new_w, new_h) != (width, height):
        img = img.resize((new_w, new_h), Image.Resampling.BICUBIC)
    if (new_w, new_h) == (size, size):
        return img
    canvas = Image.new("RGB", (size, size), (0, 0, 0))
    canvas.paste(img, ((size - new_w) // 2, (size - new_h) // 2))
    return canvas


def resize_center_crop(img: Image.Image, size: int) -> Image.Image:
    """torchvision ``Resize(size)`` + ``CenterCrop(size)`` with bicubic resampling (OpenAI CLIP)."""
    width, height = img.size
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = size, int(size * long / short)
    new_w, new_h = (new_short, new_long) if width <= height else (new_long, new_short)
    if (new_w, new_h) != (width, height):
        img = img.resize((new_w, new_h), Image.Resampling.BICUBIC)
    top = int(round((new_h - size) / 2.0))
    left = int(round((new_w - size) / 2.0))
    if (new_w, new_h) == (size, size):
        return img
    return img.crop((left, top, left + size, top + size))
