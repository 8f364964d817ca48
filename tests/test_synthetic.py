"""The ground-truth renderer (recon.data.raster) and the synthetic dataset (recon.data.synthetic):
parity with a brute-force reference, camera agreement, determinism, bounds, and the key
property that stored voxels project exactly onto the stored alpha masks with our cameras."""

from __future__ import annotations

import math

import h5py
import numpy as np
import pytest
import torch

from recon import cameras
from recon.data.raster import render_views, voxel_mask_iou
from recon.mesh import voxels_to_mesh
from recon.data.schema import validate
from recon.data.synthetic import (CATEGORIES, DEFAULT_CATEGORIES, MARGIN, build_synthetic, make_object, make_parts,
                                  resolve_categories, split_sizes)


pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------------------------
# raster
# ----------------------------------------------------------------------------------------------

def render_naive(verts, faces, views, s, ss, light=(0.35, 0.6, -1.0), ambient=0.35):
    """Brute force: every sub-sample against every face, float64, nearest by 1/z."""
    v = torch.as_tensor(verts, dtype=torch.float64)
    n = len(views)
    az = cameras.view_azimuths(torch.tensor(views)).double()
    cam = cameras.look_at(v[None].expand(n, -1, -1), cameras.eye_from_angles(az))
    ndc = cameras.perspective(cam)
    sf = s * ss
    c = (2 * np.arange(sf) + 1 - sf) / sf
    px, py = np.meshgrid(c, -c)  # [row, col] -> NDC x, y
    lt = np.asarray(light) / np.linalg.norm(light)
    out = np.zeros((n, 4, s, s))
    for b in range(n):
        best = np.full((sf, sf), -np.inf)
        shade = np.zeros((sf, sf))
        for f in np.asarray(faces):
            (x0, y0), (x1, y1), (x2, y2) = ndc[b, f, :2].numpy()
            area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
            if abs(area) < 1e-15:
                continue
            l1 = ((px - x0) * (y2 - y0) - (x2 - x0) * (py - y0)) / area
            l2 = ((x1 - x0) * (py - y0) - (px - x0) * (y1 - y0)) / area
            l0 = 1 - l1 - l2
            inside = (l0 >= 0) & (l1 >= 0) & (l2 >= 0)
            iz = 1 / cam[b, f, 2].numpy()
            depth = l0 * iz[0] + l1 * iz[1] + l2 * iz[2]
            tri = cam[b, f].numpy()
            nrm = np.cross(tri[1] - tri[0], tri[2] - tri[0])
            nrm = -nrm if nrm @ tri[0] > 0 else nrm
            sh = ambient + (1 - ambient) * max(0.0, nrm @ lt / np.linalg.norm(nrm))
            win = inside & (depth > best)
            best[win] = depth[win]
            shade[win] = sh
        cov = np.isfinite(best)
        out[b, 3] = cov.reshape(s, ss, s, ss).mean((1, 3))
        out[b, :3] = (shade * 0.8).reshape(s, ss, s, ss).mean((1, 3))
    return np.round(out * 255)


def test_raster_matches_brute_force():
    rng = np.random.default_rng(0)
    verts = rng.uniform(-0.45, 0.45, (9, 3))
    faces = np.array([[0, 1, 2], [3, 4, 5], [6, 7, 8], [0, 4, 8]])
    views = [0, 5, 13]
    fast = render_views(verts, faces, views, image_size=12, supersample=3).astype(int)
    ref = render_naive(verts, faces, views, 12, 3)
    diff = np.abs(fast - ref)
    # float32 vs float64 may flip a sample lying within ~1e-6 of an edge: allow one sample.
    assert diff[:, 3].max() <= math.ceil(255 / 9) and (diff[:, 3] > 0).mean() < 0.01
    assert np.abs(fast[:, 3] - ref[:, 3]).sum() < 2 * 255
    assert (diff[:, :3] > 2).mean() < 0.01


def test_raster_agrees_with_cameras():
    # The silhouette of a convex box is the convex hull of its projected corners: pixel centres
    # inside the hull (computed from recon.cameras alone) are exactly the covered ones.
    from scipy.spatial import ConvexHull

    corners = np.array([[x, y, z] for x in (-0.3, 0.1) for y in (-0.2, 0.25) for z in (-0.1, 0.35)], float)
    faces = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                      [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]])
    views = [0, 6, 17]
    img = render_views(corners, faces, views, supersample=1)
    proj = cameras.project(torch.tensor(corners)[None].expand(3, -1, -1),
                           cameras.view_azimuths(torch.tensor(views)).double())
    px = cameras.ndc_to_pixel(proj[..., :2]).numpy()  # (3, 8, (col, row))
    rows, cols = np.mgrid[0:64, 0:64]
    centres = np.stack([cols.ravel(), rows.ravel(), np.ones(64 * 64)], 1)
    for b in range(3):
        dist = (centres @ ConvexHull(px[b]).equations.T).max(1).reshape(64, 64)  # > 0 outside
        sure = np.abs(dist) > 1e-3
        np.testing.assert_array_equal((img[b, 3] > 0)[sure], (dist < 0)[sure])
        assert (dist < 0).sum() > 100
    assert (img[:, :3][np.broadcast_to(img[:, 3:] == 0, img[:, :3].shape)] == 0).all()  # black background
    # culling back faces of a closed outward mesh changes nothing in alpha
    np.testing.assert_array_equal(render_views(corners, faces, views, cull_backfaces=True)[:, 3],
                                  render_views(corners, faces, views)[:, 3])


def test_voxels_to_mesh_closed_and_exact():
    import trimesh

    vox = np.zeros((32, 32, 32), bool)
    vox[3:9, 10:20, 5:7] = True
    vox[20, 20, 20] = True
    v, f = voxels_to_mesh(vox)
    m = trimesh.Trimesh(v, f)
    assert m.volume == pytest.approx(vox.sum() / 32 ** 3)  # outward, closed
    assert v[:, 0].min() == pytest.approx(-0.5 + 3 / 32) and v[:, 1].max() == pytest.approx(-0.5 + 21 / 32)


# ----------------------------------------------------------------------------------------------
# synthetic objects
# ----------------------------------------------------------------------------------------------

def test_objects_deterministic_bounded_closed():
    import trimesh

    for key in CATEGORIES:
        v, f, vox = make_object(key, 3, seed=0)
        v2, f2, vox2 = make_object(key, 3, seed=0)
        np.testing.assert_array_equal(v, v2)
        np.testing.assert_array_equal(f, f2)
        np.testing.assert_array_equal(vox, vox2)
        other = make_object(key, 3, seed=1)[0]
        assert other.shape != v.shape or not np.array_equal(other, v)
        assert v.dtype == np.float32 and f.dtype == np.int64 and vox.dtype == bool and vox.shape == (32, 32, 32)
        assert np.abs(v).max() <= 0.5 and (v.max(0) - v.min(0)).max() == pytest.approx(1 - MARGIN, abs=1e-5)
        assert vox.sum() > 50
        for pv, pf in make_parts(key, 3, seed=0):
            part = trimesh.Trimesh(pv, pf, process=True)
            assert part.is_watertight and part.volume > 0


def test_intra_class_variation():
    # Different objects of a class differ in their voxels, not only in colour.
    for key in DEFAULT_CATEGORIES:
        grids = [make_object(key, i, 0)[2] for i in range(4)]
        ious = [(a & b).sum() / (a | b).sum() for i, a in enumerate(grids) for b in grids[i + 1:]]
        assert max(ious) < 0.95, (CATEGORIES[key], ious)


def test_voxels_project_onto_alpha(tmp_path):
    path = tmp_path / "tiny.h5"
    build_synthetic(path, per_category=(3, 1, 1), categories=["airplane", "chair", "lamp"], seed=0, workers=1,
                    progress=False)
    tested = 0
    with h5py.File(path) as f:
        for key in ("02691156", "03001627", "03636649"):
            for i in range(3):
                images = f[key]["train/images"][i]
                vox = f[key]["train/voxels_exact"][i].astype(bool)  # centre sampling of [-0.5, 0.5]^3
                flip_x = vox[::-1]
                swap_xz = vox.transpose(2, 1, 0)
                if (vox & flip_x).sum() / (vox | flip_x).sum() > 0.8:
                    continue  # (nearly) mirror-symmetric: a flip would not be detectable
                good = voxel_mask_iou(vox, images).mean()
                assert good >= 0.8, (key, i, good)
                assert voxel_mask_iou(flip_x, images).mean() <= good - 0.05, (key, i)
                assert voxel_mask_iou(swap_xz, images).mean() <= good - 0.05, (key, i)
                tested += 1
    assert tested >= 3


def test_build_tiny_dataset(tmp_path):
    info = build_synthetic(tmp_path / "a.h5", per_category=(2, 1, 0), categories=["car", "03001627"], seed=4,
                           workers=1, progress=False)
    assert info.categories == {"02958343": "car", "03001627": "chair"}
    assert info.objects("train") == {"02958343": 2, "03001627": 2}
    assert info.objects("test") == {"02958343": 0, "03001627": 0}  # present but empty
    # a worker pool writes the same bytes in the same order
    build_synthetic(tmp_path / "b.h5", per_category=(2, 1, 0), categories=["car", "chair"], seed=4, workers=2,
                    progress=False)
    validate(tmp_path / "b.h5")
    with h5py.File(tmp_path / "a.h5") as a, h5py.File(tmp_path / "b.h5") as b:
        for key in a:
            for split in a[key]:
                assert set(a[key][split]) == set(b[key][split])
                for name in a[key][split]:  # images, both grids, object ids, meshes
                    np.testing.assert_array_equal(a[key][split][name][()], b[key][split][name][()])
        ids = [x.decode() for x in a["03001627/val/object_ids"][()]]
        assert ids == ["chair-val-00000"]
        # val objects do not depend on the train size
        v_val = make_object("03001627", 1_000_000, 4)[2]
        np.testing.assert_array_equal(a["03001627/val/voxels_exact"][0].astype(bool), v_val)


def test_split_sizes():
    assert split_sizes(300) == {"train": 300, "val": 40, "test": 40}
    assert split_sizes(3) == {"train": 3, "val": 1, "test": 1}
    assert split_sizes((5, 0, 2)) == {"train": 5, "val": 0, "test": 2}
    assert split_sizes({"train": 4}) == {"train": 4, "val": 0, "test": 0}
    for bad in ((1, 2), {"dev": 3}, (0, 0, 0), (-1, 2, 2)):
        with pytest.raises(ValueError):
            split_sizes(bad)
    assert split_sizes(10, val=0) == {"train": 10, "val": 0, "test": 1}
    assert split_sizes(10, val=3, test=2) == {"train": 10, "val": 3, "test": 2}
    with pytest.raises(ValueError, match="category 'spaceship' not found; available: 03001627 \\(chair\\)"):
        build_synthetic("/nonexistent/x.h5", per_category=1, categories=["spaceship"], progress=False)
    assert resolve_categories(["Chair", "03001627", "car"]) == ["03001627", "02958343"]  # names in any case, once
