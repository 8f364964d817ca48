"""Reconstruct meshes from your own images (PNG/JPEG).

    python -m pipelines.predict photo.jpg cut_out.png --checkpoint runs/baseline --out predictions

Images with transparency use their alpha channel as the object mask; others are segmented
from a plain background (see ``recon.data.image_io``). Each image gives OUT/NAME.obj and
OUT/NAME_turntable.png (original, model input, 8 views of the mesh). A file that cannot be
used prints ``error: <file>: <reason>`` and the others are still processed; the exit status
is 2 if any file failed, 0 otherwise.
"""

from __future__ import annotations

import argparse

from pipelines.cli import OneLineParser, console, fail, print_error, user_errors


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m pipelines.predict", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", nargs="+", metavar="IMAGE", help="PNG or JPEG files")
    p.add_argument("--checkpoint", required=True, help="run directory (uses best.pt) or checkpoint file")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (default: %(default)s)")
    p.add_argument("--size", type=int, default=64, help="model input resolution (default: %(default)s)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with user_errors():
        from recon.checkpoint import resolve_checkpoint
        from recon.data.image_io import ImageError
        from recon.predict import output_names, predict_file
        from recon.training import load_model, resolve_device

        if args.size < 8 or args.size % 8:
            raise ValueError(f"--size must be a positive multiple of 8, got {args.size}")
        device = resolve_device(args.device)
        ckpt = resolve_checkpoint(args.checkpoint)
        model, state = load_model(ckpt, device)
        console.print(f"[bold]recon predict[/] {len(args.images)} image(s) with {ckpt} "
                      f"(encoder={state['config'].get('encoder')}, step {state['step']}) -> {args.out}")
    failed = 0
    for path, name in zip(args.images, output_names(args.images)):
        try:
            out = predict_file(model, path, args.out, name, size=args.size, device=device)
        except (ImageError, RuntimeError) as e:  # RuntimeError: the model rejects this --size
            failed += 1
            print_error(f"{path}: {e}")
            continue
        except OSError as e:  # the output directory cannot be written: no point going on
            fail(f"{args.out}: {e.strerror or e}")
        mask = "alpha channel" if out.used_alpha else "segmented"
        console.print(f"{path} ({mask}) -> {out.obj}, {out.turntable}")
    if failed:
        raise SystemExit(2)
    return 0


if __name__ == "__main__":
    main()
