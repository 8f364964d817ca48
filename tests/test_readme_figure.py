"""tools/readme_figure.py: the README's picture (input images -> predicted meshes) from a checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
from checkpoints import untrained_checkpoint
from PIL import Image

from tools import readme_figure


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """An untrained but valid checkpoint: the picture's plumbing does not need a trained model."""
    return untrained_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.pt", "attention", step=7)


def test_one_column_per_category(checkpoint: Path, tiny_dataset: str, tmp_path: Path, one_thread, capsys) -> None:
    out = tmp_path / "pics" / "reconstruction.png"
    args = ["--checkpoint", str(checkpoint), "--data", tiny_dataset, "--out", str(out), "--view", "5", "--index", "1"]
    assert readme_figure.main(args) == 0
    said = capsys.readouterr().out
    assert "(step 7)" in said and "test object 1" in said and "view 5" in said
    # two categories in three rows (input, two renders): taller than wide; six would be twice as wide as tall
    width, height = Image.open(out).size
    assert height > width
    assert [p.name for p in out.parent.iterdir()] == ["reconstruction.png"]  # no temp file left


def test_bad_view_or_index_is_one_line(checkpoint: Path, tiny_dataset: str) -> None:
    with pytest.raises(ValueError, match=r"--view 24: .* has views 0-23"):
        readme_figure.figure(str(checkpoint), tiny_dataset, view=24)
    with pytest.raises(ValueError, match=r"no category has an object 2 in split 'test'"):
        readme_figure.figure(str(checkpoint), tiny_dataset, index=2)  # 2 test objects each: 0 and 1
