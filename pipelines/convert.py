"""Build or check recon HDF5 datasets.

    python -m pipelines.convert synthetic --out data/synthetic.h5 [--per-category 300] [--seed 0]
    python -m pipelines.convert meshes    --src my_meshes/ --out data/mine.h5 [--split 0.8,0.1,0.1]
    python -m pipelines.convert nmr       --src softras_data/ --out data/shapenet.h5 [--voxel-axes auto]
                                          ("softras", the earlier name, still works)
    python -m pipelines.convert validate  data/synthetic.h5 [--deep]

Converters show progress bars, then objects per category and split, file size and time. Bad
input: one line ``error: <message>`` on stderr, exit status 2. Ctrl-C / SIGTERM end it with
status 130 / 143 and nothing at --out (an old file there stays as it was).
"""

from __future__ import annotations

import argparse
import time
import warnings

from recon.signals import default_stop_actions

if __name__ == "__main__":  # first: a signal ends the program at once, except while a file is written (recon.signals)
    default_stop_actions()  # so a Ctrl-C during the imports below (rich, then torch in main) prints no traceback

from rich.markup import escape  # noqa: E402

from pipelines.cli import OneLineParser, console, err_console, user_errors  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m pipelines.convert", description=__doc__,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="{synthetic,meshes,nmr,validate}")

    def command(name: str, summary: str, description: str, workers: bool = True,
                aliases: tuple[str, ...] = ()) -> argparse.ArgumentParser:
        q = sub.add_parser(name, help=summary, description=description, aliases=list(aliases))
        q.add_argument("--out", required=True, help="output HDF5 file (written atomically: temp file + rename)")
        q.add_argument("--classes", help="comma-separated subset of categories, by key (03001627) or name (chair)")
        if workers:
            q.add_argument("--workers", type=int, help="worker processes (default: all CPU cores; 0 or 1 = no pool)")
        q.add_argument("--no-progress", action="store_true", help="no progress bars")
        return q

    q = command("synthetic", "generate the embedded procedural dataset",
                "Generate procedural ShapeNet-like objects (default: 300/40/40 objects in each of chair, table, "
                "airplane, car, lamp, bench; sofa and watercraft are available through --classes), render 24 views "
                "and voxelize them exactly.")
    q.add_argument("--per-category", type=int, default=300, help="train objects per category (default: %(default)s)")
    q.add_argument("--val", type=int, help="val objects per category (default: max(1, per-category / 7.5))")
    q.add_argument("--test", type=int, help="test objects per category (default: max(1, per-category / 7.5))")
    q.add_argument("--seed", type=int, default=0, help="dataset seed (default: %(default)s)")
    q = command("meshes", "convert a folder of meshes",
                "Convert meshes (.obj .ply .stl .glb .gltf .off): one subfolder per category (ShapeNet synset ids "
                "get their names) or a flat folder = one category. Unusable files are skipped and listed.")
    q.add_argument("--src", required=True, help="source folder")
    q.add_argument("--split", default="0.8,0.1,0.1", help="train,val,test ratios summing to 1 (default: %(default)s)")
    q.add_argument("--seed", type=int, default=0, help="seed of the per-category split shuffle (default: %(default)s)")
    q = command("nmr", "convert SoftRas/NMR .npz files (alias: softras)", "Convert <classid>_<split>_images.npz / "
                "_voxels.npz (the NMR ShapeNet renders SoftRas trains on), streaming one object at a time.",
                workers=False, aliases=("softras",))
    q.add_argument("--src", required=True, help="folder with the .npz files")
    q.add_argument("--voxel-axes", default="auto",
                   help="how NMR voxel axes map onto ours: auto (detect per class from the alpha masks, default), nmr "
                        "(+y+x-z, derived from SoftRas' evaluation code), identity, or a signed axis permutation such "
                        "as +y+x-z (one signed world axis per source-grid axis)")
    q = sub.add_parser("validate", help="check a dataset file and summarise it", description="Validate a recon HDF5 "
                       "file (format, version, shapes, dtypes, names, splits, GT meshes) and print a summary; --deep "
                       "also decompresses every chunk (docs/operations.md).")
    q.add_argument("path", help="HDF5 file")
    q.add_argument("--deep", action="store_true", help="read every chunk, so corrupt compressed data is found now, "
                   "not during a training (costs a full read of the file)")
    return p


def main(argv: list[str] | None = None):
    with user_errors():  # recon.signals.Interrupted (a stop signal while writing) -> one line, exit 130 / 143
        args = build_parser().parse_args(argv)
        from recon.data.convert import ConvertConfig, convert, summary_table  # torch, h5py: ~1 s, not for --help

        cfg = ConvertConfig(**vars(args))
        cfg.validate()
        t0 = time.time()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            info = convert(cfg)
        for w in caught:
            err_console.print(f"[yellow]warning:[/] {escape(str(w.message))}", soft_wrap=True, highlight=False)
        title = (f"{escape(cfg.path)}: valid recon-hdf5 v{info.version}" if cfg.command == "validate"
                 else f"{escape(cfg.out)} ({cfg.command})")
        console.print(summary_table(info, title, None if cfg.command == "validate" else time.time() - t0))
        return info


if __name__ == "__main__":
    main()
