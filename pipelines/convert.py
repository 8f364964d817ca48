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

from pipelines.cli import command_parser, console, debug_requested, err_console, user_errors  # noqa: E402
from recon.config import CONVERT_ALIASES, ConvertConfig, add_dataclass_args, config_from_args  # noqa: E402

_COMMANDS = {  # subcommand: (--help line, description)
    "synthetic": ("generate the embedded procedural dataset",
                  "Generate procedural ShapeNet-like objects (default: 300/40/40 objects in each of chair, table, "
                  "airplane, car, lamp, bench; sofa and watercraft are available through --classes), render 24 "
                  "views and voxelize them exactly."),
    "meshes": ("convert a folder of meshes",
               "Convert meshes (.obj .ply .stl .glb .gltf .off): one subfolder per category (ShapeNet synset ids get "
               "their names) or a flat folder = one category. Unusable files are skipped and listed."),
    "nmr": ("convert SoftRas/NMR .npz files (alias: softras)", "Convert <classid>_<split>_images.npz / _voxels.npz "
            "(the NMR ShapeNet renders SoftRas trains on), streaming one object at a time."),
    "validate": ("check a dataset file and summarise it",
                 "Validate a recon HDF5 file (format, version, shapes, dtypes, names, splits, GT meshes) and print a "
                 "summary; --deep also decompresses every chunk (docs/operations.md)."),
}


def build_parser() -> argparse.ArgumentParser:
    p = command_parser("pipelines.convert", __doc__)
    sub = p.add_subparsers(dest="command", required=True, metavar="{" + ",".join(_COMMANDS) + "}")
    for name, (summary, description) in _COMMANDS.items():
        aliases = [old for old, new in CONVERT_ALIASES.items() if new == name]  # "softras": nmr's earlier name
        add_dataclass_args(sub.add_parser(name, help=summary, description=description, aliases=aliases), ConvertConfig,
                           command=name)
    return p


def main(argv: list[str] | None = None):
    args = build_parser().parse_args(argv)
    # recon.signals.Interrupted (a stop signal while writing) -> one line, exit 130 / 143
    with user_errors(debug=debug_requested(args)):
        from recon.workflows.convert import convert, summary_table  # torch, h5py: ~1 s, not for --help

        cfg = config_from_args(ConvertConfig, args)
        t0 = time.time()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            info = convert(cfg)  # checks the flags and --out before reading or writing anything
        for w in caught:
            err_console.print(f"[yellow]warning:[/] {escape(str(w.message))}", soft_wrap=True, highlight=False)
        title = (f"{escape(cfg.path)}: valid recon-hdf5 v{info.version}" if cfg.command == "validate"
                 else f"{escape(cfg.out)} ({cfg.command})")
        console.print(summary_table(info, title, None if cfg.command == "validate" else time.time() - t0))
        return info


if __name__ == "__main__":
    main()
