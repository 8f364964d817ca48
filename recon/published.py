"""Published single-view 3D IoU numbers on the SoftRas/NMR ShapeNet data, with where each comes from.

Only numbers that could be checked against a public source are here; a category or a row that
could not be checked is left out rather than guessed (the comparison report shows "–" for it).
Every number is the SoftRas/NMR protocol (``recon.ops.voxelize``, ``softras``): 32^3 IoU, mean over
the 24 views of every object of the ``val`` split of a class, then the unweighted mean over the 13
classes (``mean_iou`` is that 13-class mean, whatever categories a comparison has).

Not included, because no source could be checked here: SoftRas's silhouette-only row (0.623 as
quoted in this project's issue), SoftRas's and NMR's per-category numbers other than NMR's airplane,
and the reproduced CS482/682 report (0.546 / 0.540 / 0.539), which is not available.
"""

from __future__ import annotations

from typing import Any

__all__ = ["PUBLISHED", "published_rows"]

# key -> row (the shape of a result-table row, per-category IoUs keyed by our category names) + label, source
PUBLISHED: dict[str, dict[str, Any]] = {
    "nmr": {
        "label": "NMR (Kato et al., CVPR 2018)",
        "mean_iou": 0.6015,
        "per_category": {"airplane": {"iou": 0.6172}},
        "classes": 13,
        "source": "H. Kato, Y. Ushiku, T. Harada, Neural 3D Mesh Renderer, CVPR 2018, Table 1 (single-image "
                  "reconstruction, voxel IoU); mean and airplane as listed for the paper on wizwand.com "
                  "(ShapeNet mean IoU 0.6015, airplane IoU 61.72)",
    },
    "softras_full": {
        "label": "SoftRas, full (Liu et al., ICCV 2019)",
        "mean_iou": 0.6464,
        "per_category": {},
        "classes": 13,
        "source": "S. Liu, T. Li, W. Chen, H. Li, Soft Rasterizer: A Differentiable Renderer for Image-based 3D "
                  "Reasoning, ICCV 2019, Table 1 ('Ours (full)'); mean as listed for the paper on "
                  "paperswithcode.com (ShapeNet 3DIoU 0.6464)",
    },
}


def published_rows(categories: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """The published rows by key, each ``{label, mean_iou, mean_loss: None, per_category {name: {iou}}, classes,
    source}``; ``per_category`` restricted to ``categories`` when given."""
    out = {}
    for key, row in PUBLISHED.items():
        per = {c: dict(m) for c, m in row["per_category"].items() if categories is None or c in categories}
        out[key] = {"label": row["label"], "mean_iou": row["mean_iou"], "mean_loss": None, "per_category": per,
                    "classes": row["classes"], "source": row["source"]}
    return out
