"""Import diffusers without the torchvision warnings about image processors the pipelines do not use.

Without torchvision (the toolkit never installs it), transformers >= 5 resolves the name
``CLIPImageProcessor`` to its PIL implementation ``CLIPImageProcessorPil`` and logs, once per name,
"`CLIPImageProcessor` requires torchvision (not installed); falling back to ...". diffusers reads
two such names when its modules are imported, not when a pipeline runs:

- ``CLIPImageProcessor`` in ``pipelines/stable_diffusion/pipeline_stable_diffusion.py``: the type of
  the pipeline's ``feature_extractor``, which only the safety checker uses; we load every pipeline
  with ``safety_checker=None, feature_extractor=None`` (``prefalign.adapt.base_model``);
- ``SiglipImageProcessor`` in ``loaders/ip_adapter.py``: IP-Adapter image encoders, which we never load.

So every diffusion command printed two lines about a feature nobody asked for. Binding those names to
the PIL classes before diffusers reads them is exactly what transformers' fallback would do, minus the
message; no warning filter is installed, so every other warning (transformers', diffusers',
Python's) still shows. With torchvision installed nothing is changed.
"""

from __future__ import annotations

# Image-processor names diffusers' modules read at import time (see the module docstring).
UNUSED_IMAGE_PROCESSORS = ("CLIPImageProcessor", "SiglipImageProcessor")


def bind_pil_image_processors(names: tuple[str, ...] = UNUSED_IMAGE_PROCESSORS) -> list[str]:
    """Resolve ``transformers.<name>`` to ``<name>Pil`` when torchvision is missing; idempotent.

    Returns:
        The names bound by this call (empty with torchvision installed, or on a second call).
    """
    import sys

    import transformers
    from transformers.utils import is_torchvision_available

    if is_torchvision_available():
        return []
    bound = []
    for name in names:
        pil = getattr(transformers, f"{name}Pil", None)
        # transformers may swap the module object in sys.modules while resolving a name: bind the
        # name on the module that ``from transformers import ...`` reads from now.
        module = sys.modules["transformers"]
        if pil is None or name in vars(module):  # unknown, or already resolved (by us or transformers)
            continue
        setattr(module, name, pil)
        bound.append(name)
    return bound


def import_diffusers():
    """``import diffusers`` after :func:`bind_pil_image_processors`; returns the module."""
    bind_pil_image_processors()
    import diffusers

    return diffusers
