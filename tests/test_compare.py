"""pipelines.compare end to end on a tiny dataset: outputs, report consistency, run reuse."""

from __future__ import annotations

import base64
import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

ENCODERS = ["resnet", "attention"]


def _argv(data: str, out: Path, iterations: int = 2, encoders: str = "resnet,attention", *extra: str) -> list[str]:
    return ["--data", data, "--out", str(out), "--iterations", str(iterations), "--encoders", encoders,
            "--views", "2", "--max-per-category", "1", "--batch-size", "2", "--device", "cpu", "--figures", "1",
            "--log-every", "1", "--val-objects", "1", "--val-views", "1", "--no-tensorboard", "--no-full-metrics",
            *extra]


class _Report(HTMLParser):
    """Collects <img src> and the text of every <td data-key=...>."""

    def __init__(self) -> None:
        super().__init__()
        self.srcs: list[str] = []
        self.cells: dict[str, str] = {}
        self._key: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.srcs.append(a.get("src", ""))
        if tag == "td" and "data-key" in a:
            self._key = a["data-key"]
            self.cells[self._key] = ""

    def handle_data(self, data):
        if self._key is not None:
            self.cells[self._key] += data

    def handle_endtag(self, tag):
        if tag == "td":
            self._key = None


def _lookup(record: dict, key: str):
    node = record
    for part in key.split("."):
        node = node[part]
    return node


@pytest.fixture(scope="module")
def compared(tiny_dataset: str, tmp_path_factory) -> tuple[Path, dict]:
    from pipelines import compare

    out = tmp_path_factory.mktemp("cmp") / "compare"
    record = compare.main(_argv(tiny_dataset, out))
    return out, record


def test_outputs_and_table_json(compared) -> None:
    out, record = compared
    data = json.loads((out / "table.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in table.json"))
    assert data["encoders"]["resnet"]["mean_chamfer"] is None  # --no-full-metrics: not computed -> null
    assert list(data["encoders"]) == ENCODERS
    for name, e in data["encoders"].items():
        assert 0 <= e["mean_iou"] <= 1 and 0 <= e["mean_loss"] <= 1
        assert set(e["per_category"]) == {"chair", "table"}
        assert all(0 <= m["iou"] <= 1 and m["n"] == 2 for m in e["per_category"].values())  # 1 object x 2 views
        assert e["parameters"]["total"] == e["parameters"]["encoder"] + e["parameters"]["decoder"] > 0
        assert e["steps"] == 2 and e["train_time_s"] > 0 and e["run"] == "trained" and not e["reused"]
        assert (out / name / "last.pt").exists()
        png = out / f"{name}_predictions.png"
        assert png.stat().st_size > 1000 and Image.open(png).format == "PNG"
        assert f"--encoder {name}" in data["commands"]["train"][name]
    assert data["encoders"]["resnet"]["parameters"]["total"] != data["encoders"]["attention"]["parameters"]["total"]
    for b in ("template", "mean_shape"):
        row = data["baselines"][b]  # the same row shape as an encoder's
        assert 0 <= row["mean_iou"] <= 1 and row["mean_loss"] is None
        assert set(row["per_category"]) == {"chair", "table"}
        assert all(0 <= m["iou"] <= 1 for m in row["per_category"].values())
    assert data["commands"]["compare"].startswith("python -m pipelines.compare --data ")
    assert (out / "curves.png").stat().st_size > 1000
    md = (out / "table.md").read_text()
    assert "| resnet |" in md and "| attention |" in md and "template sphere" in md
    assert f"{data['encoders']['resnet']['mean_iou']:.4f}" in md


def test_report_html_images_and_numbers_match_table_json(compared) -> None:
    out, _ = compared
    data = json.loads((out / "table.json").read_text())
    report = _Report()
    report.feed((out / "report.html").read_text())
    # curves + one Fig. 2 per encoder + the input image of every 3D viewer card (1 per category and encoder)
    assert len(report.srcs) == 1 + len(ENCODERS) + 2 * len(ENCODERS)
    for src in report.srcs:
        if src.startswith("data:"):
            assert src.startswith("data:image/png;base64,")
            Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1], validate=True))).verify()
        else:
            assert (out / src).is_file(), src
    expected = {f"encoders.{e}.{k}" for e in ENCODERS
                for k in ("mean_loss", "mean_iou", "steps", "train_time_s", "parameters.total")}
    expected |= {f"encoders.{e}.per_category.{c}.iou" for e in ENCODERS for c in ("chair", "table")}
    expected |= {f"baselines.{b}.{k}" for b in ("template", "mean_shape")
                 for k in ("mean_iou", "per_category.chair.iou", "per_category.table.iou")}
    assert expected <= set(report.cells)
    for key, text in report.cells.items():
        value = _lookup(data, key)
        shown = text.strip().replace(",", "")
        decimals = len(shown.split(".")[1]) if "." in shown else 0
        assert abs(float(shown) - value) <= 0.5 * 10 ** -decimals + 1e-12, (key, text, value)
    html = (out / "report.html").read_text()
    assert "Predictions in 3D" in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)  # nothing loaded from the network
    assert "python -m pipelines.compare" in html and "python -m pipelines.train" in html


def test_rerun_reuses_finished_runs_and_resumes_unfinished(compared, tiny_dataset: str) -> None:
    from pipelines import compare

    out, _ = compared
    before = {e: ((out / e / "last.pt").resolve().stat().st_mtime_ns, (out / e / "metrics.jsonl").read_text())
              for e in ENCODERS}
    record = compare.main(_argv(tiny_dataset, out))
    for e in ENCODERS:
        assert record["encoders"][e]["reused"] and record["encoders"][e]["run"] == "reused"
        assert ((out / e / "last.pt").resolve().stat().st_mtime_ns, (out / e / "metrics.jsonl").read_text()) \
            == before[e]
    # a larger budget resumes the run instead of starting over
    record = compare.main(_argv(tiny_dataset, out, 3, "attention"))
    e = record["encoders"]["attention"]
    assert e["run"] == "resumed" and e["steps"] == 3
    assert [r["step"] for r in map(json.loads, (out / "attention" / "metrics.jsonl").read_text().splitlines())
            if "loss" in r] == [1, 2, 3]


def test_unknown_encoder_and_mismatched_run_are_one_line_errors(compared, tiny_dataset: str, capsys) -> None:
    from pipelines import compare

    out, _ = compared
    with pytest.raises(SystemExit) as exc:
        compare.main(_argv(tiny_dataset, out, 2, "resnet,vit"))
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'vit'" in err[0] and "baseline, resnet, attention" in err[0]
    with pytest.raises(SystemExit) as exc:
        compare.main(_argv(tiny_dataset, out, 2, "resnet", "--seed", "1"))
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "seed=0" in err[0] and "another --out" in err[0]
    # a schedule or (explicit) precision other than the run's is another experiment too
    saved_precision = json.loads((out / "resnet" / "config.json").read_text())["precision"]
    other = "fp32" if saved_precision == "bf16" else "bf16"
    for flags, expected in ((("--lr-schedule", "cosine"), "lr_schedule='step'"),
                            (("--precision", other), f"precision={saved_precision!r}")):
        with pytest.raises(SystemExit) as exc:
            compare.main(_argv(tiny_dataset, out, 2, "resnet", *flags))
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and expected in err[0], err


def test_table_printed_to_a_file_is_not_cut_to_80_columns(compared, tiny_dataset: str, capsys) -> None:
    """Issue 14: with stdout redirected, rich used to cut the table to 80 columns with ellipses."""
    from pipelines import compare

    out, _ = compared
    compare.main(_argv(tiny_dataset, out))  # reuses both runs
    printed = capsys.readouterr().out
    assert "…" not in printed
    assert "parameters (encoder)" in printed and "IoU table" in printed and "category-mean shape" in printed
