"""``prefalign convert``: foreign checkpoints into the prefalign model format."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from prefalign.scoring.catalog import FAMILIES, SCORE_KINDS

    p = sub.add_parser(
        "convert",
        help="convert HPS v1/v2, OpenAI CLIP, open_clip, aesthetic or HF checkpoints",
        description="Convert a checkpoint into a self-contained model directory (HF CLIPModel config + "
        "safetensors + tokenizer + prefalign.json) that `prefalign score` and `load_scorer` read. "
        "Dimensions are read off the checkpoint; legacy pickles load with torch.load(weights_only=True).",
        epilog="families:\n"
        "  hps-v1        HPS v1 hpc.pt (OpenAI CLIP layout, QuickGELU), scored as 100*cos\n"
        "  openai-clip   any OpenAI CLIP ViT checkpoint, scored as cos (CLIP score)\n"
        "  hps-v2        HPS v2 / v2.1 (HPS_v2_compressed.pt, HPS_v2.1_compressed.pt; open_clip ViT-H-14)\n"
        "  hps-v2.1      same as hps-v2\n"
        "  open-clip     any open_clip ViT checkpoint, scored as cos\n"
        "  aesthetic     LAION improved aesthetic predictor MLP (.pth) on --base CLIP ViT-L/14\n"
        "  pickscore     a HF CLIP directory or hub id scored as logit_scale.exp()*cos\n"
        "  hf-clip       a HF CLIP directory or hub id scored as cos\n"
        "  imagereward   THUDM ImageReward.pt (BLIP + MLP, standardised reward); --tokenizer: bert-base-uncased\n"
        "  mps           Kwai-Kolors MPS_overall_checkpoint.pth (pickled module, read restricted); CLIP-H tokenizer\n"
        "  hpsv3         MizzenAI HPSv3.safetensors (Qwen2-VL-7B reward model); --base: Qwen2-VL-7B-Instruct dir\n\n"
        "examples:\n"
        "  prefalign convert --from hps-v2 HPS_v2_compressed.pt --out models/hps-v2 \\\n"
        "      --tokenizer ./clip-tokenizer   # a dir with vocab.json + merges.txt when offline\n"
        "  prefalign convert --from aesthetic sac+logos+ava1-l14-linearMSE.pth \\\n"
        "      --base openai/clip-vit-large-patch14 --out models/aesthetic",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--from", dest="family", required=True, choices=sorted(FAMILIES), help="checkpoint family")
    p.add_argument("src", help="checkpoint file (a directory or hub id for pickscore / hf-clip)")
    p.add_argument("--out", "-o", required=True, help="model directory to write")
    p.add_argument(
        "--tokenizer",
        help="tokenizer directory (vocab.json + merges.txt, or HF tokenizer files) or hub id; "
        "default: the family's usual hub tokenizer",
    )
    p.add_argument(
        "--base",
        help="for aesthetic: the CLIP ViT-L/14 model directory or hub id the MLP sits on; for hpsv3: the "
        "Qwen2-VL-7B-Instruct directory (config.json + tokenizer; HPSv3's base model)",
    )
    p.add_argument(
        "--vision-heads",
        type=int,
        help="attention heads of the image tower (default: width/64, "
        "or 16 for open_clip's ViT-H/g/bigG widths)",
    )
    p.add_argument("--text-heads", type=int, help="attention heads of the text tower (default: width/64)")
    p.add_argument("--kind", choices=sorted(SCORE_KINDS), help="override the family's score kind")
    p.add_argument(
        "--preprocess",
        choices=("pad", "center-crop"),
        help="override the family's preprocessing (hps-v2: pad; the others: center-crop)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    p.set_defaults(func=run)
    from prefalign.cli.common import guard_output

    guard_output(p, "out")


def run(args: argparse.Namespace) -> int:
    from prefalign.scoring import convert_checkpoint
    from prefalign.scoring.model_format import ScorerSpec

    out = convert_checkpoint(
        args.family,
        args.src,
        args.out,
        tokenizer=args.tokenizer,
        base=args.base,
        vision_heads=args.vision_heads,
        text_heads=args.text_heads,
        kind=args.kind,
        preprocess=args.preprocess,
        overwrite=args.overwrite,
    )
    spec = ScorerSpec.load(out)
    pre = spec.preprocess
    print(f"wrote {out}: kind {spec.kind}, preprocessing {pre.mode} {pre.size}px (from {args.family})")
    return 0
