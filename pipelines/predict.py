"""Reconstruct meshes from your own images (PNG/JPEG).

    python -m pipelines.predict photo.jpg cut_out.png --checkpoint runs/baseline --out predictions

Images with transparency use their alpha channel as the object mask; others are segmented
from a plain background. Each image is framed like the training images (--framing):
  auto   (default) a square image with transparency whose object sits in the frame as in the
         training images (a render, an image exported from the dataset) is used as is; any other
         image is framed by self-consistency: of candidate sizes and positions of the object in
         the frame (within the range the training images show), the one whose predicted mesh's
         silhouette, rendered from the best-fitting training view, best matches the framed
         object's mask (docs/framing.md)
  as-is  the whole image is the camera frame (padded to a square, resized to 64x64)
  fill   the object is centred and spans --fill of the frame (default: the training median)
Each image gives OUT/NAME.obj and OUT/NAME_turntable.png (original, model input, 8 views of the
mesh). A checkpoint trained with --colour also gives OUT/NAME.ply and OUT/NAME.glb, the mesh with
its predicted vertex colours, and draws the turntable in those colours; its 'sample' colour head
projects the vertices into the image from one of the 24 training views (--view; default: the view
whose render of the predicted mesh best matches the image's mask). A file that cannot be used
prints ``error: <file>: <reason>`` and the others are still processed; the exit status is 2 if any
file failed, 0 otherwise. See recon.data.image_io.
"""

from __future__ import annotations

import argparse

from rich.markup import escape

from pipelines.cli import command_parser, console, debug_requested, print_error, user_errors
from recon.config import PredictConfig, config_from_args


def build_parser() -> argparse.ArgumentParser:
    return command_parser("pipelines.predict", __doc__, PredictConfig)


def main(argv: list[str] | None = None) -> int:
    parsed = build_parser().parse_args(argv)
    args = config_from_args(PredictConfig, parsed)
    debug = debug_requested(parsed)
    with user_errors(debug=debug):
        args.validate()
        # imported after the flag checks so that --help and flag errors answer at once (recon imports torch)
        from recon.data.image_io import Framing, ImageError
        from recon.io import check_output_dir
        from recon.workflows.predict import Predictor

        framing = Framing.from_flags(args.framing, args.fill)
        check_output_dir(args.out, "--out")
        predictor = Predictor.load(args.checkpoint, args.device, args.precision)
    console.print(f"[bold]recon predict[/] {len(args.images)} image(s) with {escape(predictor.description)} -> "
                  f"{escape(args.out)}",
                  highlight=False, soft_wrap=True)
    failed = 0
    with user_errors(debug=debug):  # an output that cannot be written ends the run with one line
        if args.view is not None and not predictor.needs_view:
            console.print(f"note: --view {args.view} is not used: this checkpoint's meshes need no input camera",
                          highlight=False, soft_wrap=True)
        for path, out in predictor.predict_files(args.images, args.out, framing, args.view):
            if isinstance(out, ImageError):
                failed += 1
                print_error(f"{path}: {out}")
                continue
            mask = "alpha channel" if out.used_alpha else "segmented"
            view = ""
            if out.view is not None:
                how = "given" if out.view_iou is None else f"best silhouette match, IoU {out.view_iou:.2f}"
                view = f", input view {out.view} ({how})"
            files = ", ".join(str(f) for f in (out.obj, out.ply, out.glb, out.turntable) if f is not None)
            searched = ""
            if out.choice is not None:
                c = out.choice
                searched = (f", centre {c.centre[0]:+.2f},{c.centre[1]:+.2f}: silhouette IoU {c.score:.2f} at training "
                            f"view {c.view}, best of {c.candidates} framings")
            console.print(f"{escape(str(path))} ({mask}, {out.framing}, object fills {out.fill:.0%}{searched}{view}) -> "
                          f"{escape(files)}",
                          highlight=False, soft_wrap=True)
    if failed:
        raise SystemExit(2)
    return 0


if __name__ == "__main__":
    main()
