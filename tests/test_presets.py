"""pipelines.compare presets: values, explicit flags overriding them, and --preset report-6 end to end at
tiny scale on .npz files in the exact SoftRas/NMR format, converted with pipelines.convert softras."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from recon.workflows.compare import PRESETS, REPORT6_CLASSES, SOFTRAS_CLASSES, preset_defaults
from recon.config import CompareConfig
from recon.data.synthetic import render_object
from recon.data.voxel_axes import NMR_AXES, to_source_axes
from recon.published import PUBLISHED

pytestmark = pytest.mark.usefixtures("one_thread")


def test_presets_hold_softras_schedule() -> None:
    s = PRESETS["softras-shapenet"]
    assert (s["iterations"], s["batch_size"], s["lr"], s["lambda_lap"], s["lambda_flat"], s["sigma"]) == \
        (250_000, 64, 1e-4, 5e-3, 5e-4, 1e-4)
    assert int(s["decay_at"] * s["iterations"]) == 150_000 and s["decay"] == 0.3 and s["eps"] == 1e-10
    assert s["encoders"] == "baseline,resnet,attention" and s["classes"].split(",") == list(SOFTRAS_CLASSES)
    assert (s["protocol"], s["split"], s["checkpoint"]) == ("softras-iou", "val", "last")
    assert len(SOFTRAS_CLASSES) == 13 and len(set(REPORT6_CLASSES)) == 6
    assert set(REPORT6_CLASSES) <= set(SOFTRAS_CLASSES)
    assert PRESETS["demo"] == {"iterations": 4000, "batch_size": 16, "lr": 5e-4, "val_every": 1000}
    help_text = CompareConfig.__dataclass_fields__["preset"].metadata["help"]
    assert all(name in help_text for name in PRESETS)
    with pytest.raises(ValueError, match="valid presets: softras-shapenet, report-6, demo"):
        preset_defaults("softras")


def test_explicit_flags_override_preset() -> None:
    from pipelines.compare import parse_config

    cfg = parse_config(["--preset", "softras-shapenet", "--data", "x.h5", "--lr", "3e-4", "--split", "test"])
    assert cfg.preset == "softras-shapenet" and cfg.train.lr == 3e-4 and cfg.split == "test"
    assert cfg.train.iterations == 250_000 and cfg.train.eps == 1e-10 and cfg.checkpoint == "last"
    cfg = parse_config(["--data", "x.h5", "--preset=demo", "--batch-size", "4"])
    assert (cfg.train.iterations, cfg.train.batch_size, cfg.train.lr, cfg.train.val_every) == (4000, 4, 5e-4, 1000)
    assert cfg.protocol == "softras-iou" and cfg.classes is None
    cfg = parse_config(["--data", "x.h5", "--iterations", "7"])
    assert cfg.preset is None and cfg.train.iterations == 7 and cfg.train.eps == 1e-4


def test_unknown_preset_is_one_line_error(capsys) -> None:
    from pipelines import compare

    with pytest.raises(SystemExit) as e:
        compare.main(["--preset", "nmr", "--data", "x.h5"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--preset 'nmr' unknown" in err[0] and "report-6" in err[0]


@pytest.fixture(scope="module")
def report6_data(tmp_path_factory) -> Path:
    """The six report-6 classes as SoftRas/NMR npz files (arr_0 uint8 images, bool voxels in NMR's axes),
    converted with pipelines.convert softras."""
    from pipelines import convert

    src = tmp_path_factory.mktemp("npz")
    for c, cls in enumerate(REPORT6_CLASSES):
        for s, (split, n) in enumerate((("train", 2), ("val", 1), ("test", 1))):
            objs = [render_object(cls, 10 * s + i, 0) for i in range(n)]
            images = np.stack([o[0] for o in objs]).astype(np.uint8)
            voxels = to_source_axes(np.stack([o[1] for o in objs]).astype(bool), NMR_AXES)
            np.savez_compressed(src / f"{cls}_{split}_images.npz", images)
            np.savez_compressed(src / f"{cls}_{split}_voxels.npz", voxels)
    out = src / "shapenet6.h5"
    convert.main(["softras", "--src", str(src), "--out", str(out), "--voxel-axes", "nmr", "--no-progress"])
    return out


def test_report6_preset_end_to_end(report6_data: Path, tmp_path: Path) -> None:
    from pipelines import compare

    out = tmp_path / "cmp"
    record = compare.main(["--preset", "report-6", "--data", str(report6_data), "--out", str(out),
                           "--encoders", "resnet", "--iterations", "2", "--batch-size", "2", "--views", "2",
                           "--val-every", "1", "--val-objects", "1", "--val-views", "1", "--device", "cpu",
                           "--figures", "1", "--no-tensorboard", "--no-full-metrics"])
    data = json.loads((out / "table.json").read_text())
    assert data["preset"] == "report-6" and data["protocol"] == "softras-iou" and data["split"] == "val"
    s = data["settings"]
    assert (s["iterations"], s["batch_size"], s["eps"], s["sigma"], s["lambda_lap"], s["checkpoint"]) == \
        (2, 2, 1e-10, 1e-4, 5e-3, "last")
    assert data["categories"] == sorted(["airplane", "bench", "car", "chair", "lamp", "table"])
    e = data["encoders"]["resnet"]
    assert e["steps"] == 2 and e["eval_step"] == 2 and set(e["per_category"]) == set(data["categories"])
    eval_json = json.loads(Path(e["eval_json"]).read_text())
    assert eval_json["protocol"] == "softras-iou" and eval_json["ground_truth"]["matches"]  # NMR grids: softras's
    assert "oracle" not in data["baselines"] and "no ground-truth meshes" in data["reference_notes"]["oracle"]
    assert set(data["published"]) == set(PUBLISHED)
    for key, row in data["published"].items():
        assert row["mean_iou"] == PUBLISHED[key]["mean_iou"] and row["source"]
    assert data["published"]["nmr"]["per_category"] == {"airplane": {"iou": 0.6172}}
    md = (out / "table.md").read_text()
    assert "## Published numbers" in md and "0.6015 (13 classes)" in md and "0.6172" in md
    assert "3D IoU protocol softras" in md and "oracle" in md
    html = (out / "report.html").read_text()
    assert "id='published'" in html and "data-key='published.nmr.mean_iou'" in html
    assert record["preset"] == "report-6"
    cmd = data["commands"]["eval"]["resnet"]
    assert "--split val" in cmd and "--protocol" not in cmd  # softras is eval's default


def test_preset_classes_must_match_the_data(report6_data: Path, tmp_path: Path, capsys) -> None:
    from pipelines import compare

    with pytest.raises(SystemExit) as e:
        compare.main(["--preset", "softras-shapenet", "--data", str(report6_data), "--out", str(tmp_path / "c"),
                      "--iterations", "1", "--device", "cpu"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--preset softras-shapenet needs exactly the categories" in err[0]
    assert "lacks 02933112" in err[0] and "pipelines.convert softras" in err[0]
