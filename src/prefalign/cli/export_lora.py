"""``prefalign adapt export-lora``: an adapter in the layout AUTOMATIC1111, ComfyUI, diffusers or PEFT loads."""

from __future__ import annotations

import argparse


def register_export_lora(sub: argparse._SubParsersAction) -> None:
    from prefalign.adapt.export import EXPORT_FORMATS

    p = sub.add_parser(
        "export-lora",
        help="write a LoRA adapter for AUTOMATIC1111 / ComfyUI (kohya), diffusers or PEFT",
        description="Write an adapter (the output of `adapt train-lora`, or any diffusers UNet LoRA directory) "
        "in another tool's layout:\n"
        "  kohya      one NAME.safetensors with lora_unet_<layer>.lora_down/.lora_up/.alpha, the layout of\n"
        "             kohya-ss/sd-scripts that AUTOMATIC1111 (models/Lora/), ComfyUI (models/loras/) and\n"
        "             diffusers' load_lora_weights read. Keys from diffusers' own converters; alpha is\n"
        "             the trained lora_alpha (diffusers' converter alone writes alpha = rank, which\n"
        "             changes the scale whenever lora_alpha != r), so the images are the same\n"
        "  diffusers  a directory with pytorch_lora_weights.safetensors (pipe.load_lora_weights(DIR))\n"
        "  peft       a directory with adapter_config.json + adapter_model.safetensors\n"
        "             (PeftModel.from_pretrained(unet, DIR))\n"
        "An existing output is refused unless --overwrite.",
        epilog="examples:\n"
        "  prefalign adapt export-lora lora-out --format kohya --out hps-lora.safetensors\n"
        "  prefalign adapt export-lora lora-out --format peft --out hps-lora-peft",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("adapter", metavar="ADAPTER_DIR", help="the adapter directory (adapt train-lora --out)")
    p.add_argument("--format", required=True, choices=EXPORT_FORMATS, help="the layout to write")
    p.add_argument("--out", "-o", required=True, help="kohya: NAME.safetensors; diffusers, peft: a directory")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(func=run_export_lora)
    from prefalign.cli.common import guard_output

    guard_output(p, "out")


def run_export_lora(args: argparse.Namespace) -> int:
    from prefalign.adapt.export import export_lora

    out = export_lora(args.adapter, args.out, args.format, overwrite=args.overwrite)
    print(f"{args.format} LoRA -> {out}")
    return 0
