"""Build or check recon HDF5 datasets.

    python -m pipelines.convert synthetic --out data/synthetic.h5 [--per-category 300] [--seed 0]
    python -m pipelines.convert meshes    --src my_meshes/ --out data/mine.h5 [--split 0.8,0.1,0.1]
    python -m pipelines.convert softras   --src softras_data/ --out data/shapenet.h5 [--voxel-axes auto]
    python -m pipelines.convert validate  data/synthetic.h5

Converters show progress bars, then a table of objects per category and split, the file
size and the time. Any bad input ends with one line ``error: <message>`` on stderr and exit
status 2; an interrupted conversion leaves nothing at --out.
"""

from __future__ import annotations

import argparse
import os
import signal
import time
import warnings
from pathlib import Path

from pipelines.cli import console, err_console, fail, user_errors


class _Parser(argparse.ArgumentParser):
    """argparse with one-line ``error: ...`` messages (exit status 2) instead of usage dumps."""

    def error(self, message: str) -> None:  # type: ignore[override]
        fail(f"{message} (see {self.prog} --help)")


_MAX_COUNT = 1_000_000  # objects per category and split: beyond this a typo, not a dataset (memory, disk)


def _int_at_least(lo: int, hi: int = _MAX_COUNT):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"expected an integer in [{lo}, {hi}], got {value}")
        return value
    return parse


def _ratios(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected three comma-separated numbers such as 0.8,0.1,0.1, "
                                         f"got {text!r}") from None
    if len(values) != 3 or min(values) < 0 or abs(sum(values) - 1) > 1e-6:
        raise argparse.ArgumentTypeError(f"expected three non-negative train,val,test ratios summing to 1, "
                                         f"got {text!r}")
    return values  # type: ignore[return-value]


def _names(text: str) -> list[str]:
    names = [x.strip() for x in text.split(",") if x.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected a comma-separated list of category keys or names")
    return names


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m pipelines.convert", description=__doc__,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="{synthetic,meshes,softras,validate}")

    def common(q: argparse.ArgumentParser, workers: bool = True) -> None:
        q.add_argument("--out", required=True, help="output HDF5 file (written atomically: temp file + rename)")
        q.add_argument("--classes", type=_names, default=None,
                       help="comma-separated subset of categories, by key (03001627) or name (chair)")
        if workers:
            q.add_argument("--workers", type=_int_at_least(0), default=None,
                           help="worker processes (default: all CPU cores; 0 or 1 = no pool)")
        q.add_argument("--no-progress", action="store_true", help="no progress bars")

    q = sub.add_parser("synthetic", help="generate the embedded procedural dataset",
                       description="Generate procedural ShapeNet-like objects (default: 300/40/40 objects in each "
                                   "of chair, table, airplane, car, lamp, bench; sofa and watercraft are available "
                                   "through --classes), render 24 views and voxelize them exactly.")
    common(q)
    q.add_argument("--per-category", type=_int_at_least(1), default=300,
                   help="train objects per category (default: %(default)s)")
    q.add_argument("--val", type=_int_at_least(0), default=None,
                   help="val objects per category (default: max(1, per-category / 7.5))")
    q.add_argument("--test", type=_int_at_least(0), default=None,
                   help="test objects per category (default: max(1, per-category / 7.5))")
    q.add_argument("--seed", type=_int_at_least(0, 2 ** 63 - 1), default=0,
                   help="dataset seed (default: %(default)s)")

    q = sub.add_parser("meshes", help="convert a folder of meshes",
                       description="Convert meshes (.obj .ply .stl .glb .gltf .off): one subfolder per category "
                                   "(ShapeNet synset ids get their names) or a flat folder = one category. Unusable "
                                   "files are skipped and listed.")
    common(q)
    q.add_argument("--src", required=True, help="source folder")
    q.add_argument("--split", type=_ratios, default=(0.8, 0.1, 0.1),
                   help="train,val,test ratios summing to 1 (default: 0.8,0.1,0.1)")
    q.add_argument("--seed", type=_int_at_least(0, 2 ** 63 - 1), default=0,
                   help="seed of the per-category split shuffle (default: %(default)s)")

    q = sub.add_parser("softras", help="convert SoftRas/NMR .npz files",
                       description="Convert <classid>_<split>_images.npz / _voxels.npz (SoftRas/NMR ShapeNet "
                                   "renders), streaming one object at a time.")
    common(q, workers=False)
    q.add_argument("--src", required=True, help="folder with the .npz files")
    q.add_argument("--voxel-axes", default="auto",
                   help="how NMR voxel axes map onto ours: auto (detect per class from the alpha masks, default), "
                        "nmr (+y+x-z, derived from SoftRas' evaluation code), identity, or a signed axis "
                        "permutation such as +y+x-z (one signed world axis per source-grid axis)")

    q = sub.add_parser("validate", help="check a dataset file and summarise it",
                       description="Validate a recon HDF5 file (format, version, shapes, dtypes) and print a summary.")
    q.add_argument("path", help="HDF5 file")
    return p


def summary_table(info, title: str, seconds: float | None = None):
    """Objects per category and split, plus file size (and build time)."""
    from rich.table import Table

    from recon.data.schema import SPLITS

    size = os.path.getsize(info.path)
    caption = f"{size / 2 ** 20:.1f} MiB" + (f", {seconds:.1f} s" if seconds is not None else "")
    caption += f", {info.image_size}x{info.image_size} px, {info.num_views} views"
    t = Table(title=title, caption=caption)
    t.add_column("category")
    t.add_column("name")
    for s in SPLITS:
        t.add_column(s, justify="right")
    t.add_column("total", justify="right")
    totals = {s: 0 for s in SPLITS}
    for key, name in info.categories.items():
        counts = {s: info.objects(s).get(key) for s in SPLITS}
        for s in SPLITS:
            totals[s] += counts[s] or 0
        t.add_row(key, name, *("-" if counts[s] is None else str(counts[s]) for s in SPLITS),
                  str(sum(c or 0 for c in counts.values())))
    t.add_section()
    t.add_row("all", f"{len(info.categories)} categories", *(str(totals[s]) for s in SPLITS), str(sum(totals.values())))
    return t


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _check_out(path: str) -> Path:
    out = Path(path)
    if out.is_dir():
        raise ValueError(f"--out {out}: is a directory, expected a file path")
    return out


def main(argv: list[str] | None = None):
    args = build_parser().parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the temp file is removed and no file appears at --out.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    with user_errors():
        import torch

        from recon.data.schema import validate

        # Per-object work is small: one thread per process (parallelism comes from workers).
        torch.set_num_threads(1)
        progress = not getattr(args, "no_progress", False)
        t0 = time.time()
        if args.command == "validate":
            info = validate(args.path)
            console.print(summary_table(info, f"{args.path}: valid recon-hdf5 v1"))
            return info
        out = _check_out(args.out)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if args.command == "synthetic":
                from recon.data.synthetic import build_synthetic, split_sizes

                sizes = split_sizes(args.per_category)
                sizes.update({k: v for k, v in (("val", args.val), ("test", args.test)) if v is not None})
                info = build_synthetic(out, per_category=sizes, categories=args.classes, seed=args.seed,
                                       workers=args.workers, progress=progress)
            elif args.command == "meshes":
                from recon.data.meshes import convert_meshes

                info, skipped = convert_meshes(args.src, out, split=args.split, seed=args.seed, classes=args.classes,
                                               workers=args.workers, progress=progress)
            else:
                from recon.data.softras_npz import convert_softras

                info = convert_softras(args.src, out, classes=args.classes, voxel_axes=args.voxel_axes,
                                       progress=progress)
        for w in caught:
            err_console.print(f"[yellow]warning:[/] {w.message}", soft_wrap=True)
        console.print(summary_table(info, f"{out} ({args.command})", time.time() - t0))
        return info


if __name__ == "__main__":
    main()
