"""A local web app: try a trained model on any picture, browse an evaluation worst-first.

    python -m pipelines.app --checkpoint runs/demo [--data data/synthetic.h5] [--port 7860]

Try it: drop, paste or pick a picture; the page shows the predicted mesh in 3D (vertex colours for
runs trained with --colour), the model input beside the mesh's silhouette at the best-matching
training view with its IoU against the picture's mask, and .glb / .obj / .ply downloads. The mesh is
the one `python -m pipelines.predict` writes for the same picture (same framing: auto).
Browse an evaluation: every scored prediction of an eval JSON (--eval, default RUN/eval_test.json
or the newest RUN/eval_*.json) in a table, lowest IoU first, filtered by category; a row shows its
input, the predicted mesh and the ground truth in 3D.

Needs the optional Gradio extra: pip install -e '.[app]' (make app installs it). The server listens
on 127.0.0.1 only unless --host says otherwise and loads nothing from the network. Requests are
served one at a time from a queue. A missing or corrupt checkpoint, dataset or eval JSON is one
line `error: ...` at start-up and exit status 2; a picture that cannot be used gets a message in
the page and the next one works. See docs/app.md.
"""

from __future__ import annotations

import argparse
import importlib.util

from pipelines.cli import command_parser, console, debug_requested, fail, user_errors


def build_parser() -> argparse.ArgumentParser:
    p = command_parser("pipelines.app", __doc__)
    p.add_argument("--checkpoint", required=True, help="run directory (uses best.pt) or checkpoint file")
    p.add_argument("--data", default=None,
                   help="HDF5 dataset for the example pictures and the evaluation's inputs and ground truth "
                        "(default: the checkpoint's training data when it is here, else built-in examples)")
    p.add_argument("--eval", default=None, metavar="JSON",
                   help="eval record to browse (default: RUN/eval_test.json, else the newest RUN/eval_*.json)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s, this machine only)")
    p.add_argument("--port", type=int, default=7860, help="port (default: %(default)s)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (default: %(default)s)")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                   help="the network's precision, as in pipelines.predict (default: %(default)s)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not 0 < args.port < 65536:
        fail(f"--port {args.port}: expected a port number in 1-65535")
    if importlib.util.find_spec("gradio") is None:  # the app's one optional dependency: say how to get it
        fail("the app needs Gradio, which is not installed: pip install -e '.[app]' (or: make app)")
    # imported after the checks: a bad checkpoint is told without loading Gradio
    with user_errors(debug=debug_requested(args)):
        from recon.app.setup import prepare

        setup = prepare(args.checkpoint, data=args.data, eval_json=args.eval, device=args.device,
                        precision=args.precision)
    from recon.app.ui import build_app, launch

    try:
        demo = build_app(setup.service, setup.examples, setup.browser, setup.browse_note)
        try:
            url = launch(demo, args.host, args.port, allowed=setup.allowed_paths)
        except OSError as e:  # Gradio's message names its own parameters, not our flag
            fail(f"--port {args.port}: cannot listen on {args.host}:{args.port} ({str(e).split('.')[0]}); "
                 f"choose another with --port")
        console.print(f"[bold]recon app[/] {setup.service.predictor.description}", highlight=False, soft_wrap=True)
        for line in setup.notes:
            console.print(line, highlight=False, soft_wrap=True)
        console.print(f"recon app running at {url} (Ctrl-C to stop)", highlight=False, soft_wrap=True)
        demo.block_thread()
    finally:
        setup.service.close()
    return 0


if __name__ == "__main__":
    main()
