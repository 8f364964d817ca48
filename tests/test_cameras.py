"""Pin the SoftRas camera convention of recon.cameras with hand-derived numbers.

Derivation (d = 2.732, elevation 30 deg, t = tan 15 deg = 2 - sqrt 3, S = 64):

* view 0 (azimuth 0): eye = (0, d/2, -d sqrt3/2). Camera axes: z = (0, -1/2, sqrt3/2),
  x = normalize(up x z) = (1, 0, 0), y = z x x = (0, sqrt3/2, 1/2).
  - origin: camera coords (0, 0, d) -> NDC (0, 0), pixel (col, row) = (31.5, 31.5).
  - (0.5, 0, 0): camera (0.5, 0, d) -> NDC x = 0.5 / (d t).
  - (0, 0, -0.5): camera (0, -1/4, d - sqrt3/4) -> NDC y = -(1/4) / ((d - sqrt3/4) t) (below centre).
* view 6 (azimuth -90): eye = (-d sqrt3/2, d/2, 0). Axes: z = (sqrt3/2, -1/2, 0),
  x = (0, 0, -1), y = (1/2, sqrt3/2, 0).
  - (0, 0, -0.5): camera (0.5, 0, d) -> same pixel as (0.5, 0, 0) at view 0.
  - (0.5, 0, 0): camera (0, 1/4, d + sqrt3/4) -> NDC y = (1/4) / ((d + sqrt3/4) t) (above centre).
Pixels: col = (x + 1) S/2 - 1/2, row = (1 - y) S/2 - 1/2.
"""

from __future__ import annotations

import math

import pytest
import torch

from recon import cameras

D = 2.732
T = 2.0 - math.sqrt(3.0)  # tan 15 deg
S3 = math.sqrt(3.0)


def pix(x: float, y: float, s: int = 64) -> tuple[float, float]:
    return (x + 1) * s / 2 - 0.5, (1 - y) * s / 2 - 0.5


CASES = [
    # view, world point, expected NDC (x, y), expected depth
    (0, (0.0, 0.0, 0.0), (0.0, 0.0), D),
    (0, (0.5, 0.0, 0.0), (0.5 / (D * T), 0.0), D),
    (0, (0.0, 0.0, -0.5), (0.0, -0.25 / ((D - S3 / 4) * T)), D - S3 / 4),
    (6, (0.0, 0.0, 0.0), (0.0, 0.0), D),
    (6, (0.0, 0.0, -0.5), (0.5 / (D * T), 0.0), D),
    (6, (0.5, 0.0, 0.0), (0.0, 0.25 / ((D + S3 / 4) * T)), D + S3 / 4),
]


def test_constants_and_azimuths():
    assert (cameras.NUM_VIEWS, cameras.ELEVATION, cameras.DISTANCE, cameras.VIEWING_ANGLE, cameras.IMAGE_SIZE) == (
        24, 30.0, 2.732, 15.0, 64)
    assert cameras.view_azimuths(torch.tensor([0, 1, 6, 23])).tolist() == [0.0, -15.0, -90.0, -345.0]
    assert cameras.view_azimuths(6).tolist() == [-90.0]


def test_eye_positions():
    eye = cameras.eye_from_angles(cameras.view_azimuths(torch.tensor([0, 6])).double())
    torch.testing.assert_close(eye, torch.tensor([[0.0, D / 2, -D * S3 / 2], [-D * S3 / 2, D / 2, 0.0]],
                                                 dtype=torch.float64), atol=1e-9, rtol=0)


@pytest.mark.parametrize("view,point,ndc,depth", CASES)
def test_known_points(view, point, ndc, depth):
    p = torch.tensor([[point]], dtype=torch.float64)
    out = cameras.project(p, cameras.view_azimuths(view).double())[0, 0]
    torch.testing.assert_close(out, torch.tensor([ndc[0], ndc[1], depth], dtype=torch.float64), atol=1e-9, rtol=0)
    got = cameras.ndc_to_pixel(out[:2])
    torch.testing.assert_close(got, torch.tensor(pix(*ndc), dtype=torch.float64), atol=1e-7, rtol=0)


def test_hand_pixels():
    # The same cases as concrete pixels (col, row), to read at a glance.
    az = cameras.view_azimuths(torch.tensor([0, 0, 6])).double()
    pts = torch.tensor([[[0.0, 0.0, 0.0]], [[0.0, 0.0, -0.5]], [[0.5, 0.0, 0.0]]], dtype=torch.float64)
    px = cameras.ndc_to_pixel(cameras.project(pts, az)[..., :2])[:, 0]
    torch.testing.assert_close(px, torch.tensor([[31.5, 31.5], [31.5, 44.4868], [31.5, 22.0668]], dtype=torch.float64),
                               atol=1e-3, rtol=0)


def test_pixel_centres_match_ndc_to_pixel():
    c = cameras.pixel_centers(8, dtype=torch.float64)
    px = cameras.ndc_to_pixel(c, 8)
    rows, cols = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
    torch.testing.assert_close(px[..., 0], cols.double())
    torch.testing.assert_close(px[..., 1], rows.double())
    assert c[0, 0].tolist() == [-7 / 8, 7 / 8]  # row 0 is the top, column 0 the left


def test_batching_matches_single():
    g = torch.Generator().manual_seed(0)
    verts = torch.rand(5, 7, 3, generator=g) - 0.5
    az = cameras.view_azimuths(torch.tensor([0, 3, 6, 11, 23]))
    batch = cameras.project(verts, az)
    for b in range(5):
        torch.testing.assert_close(batch[b:b + 1], cameras.project(verts[b:b + 1], az[b:b + 1]))
    # one azimuth broadcast over a batch
    torch.testing.assert_close(cameras.project(verts, az[2:3]), cameras.project(verts, az[2].expand(5)))
    with pytest.raises(ValueError):
        cameras.project(verts, az[:2])
    with pytest.raises(ValueError):
        cameras.project(verts[0], az[:1])


def test_differentiable():
    verts = (torch.rand(2, 4, 3, dtype=torch.float64) - 0.5).requires_grad_()
    az = torch.tensor([-15.0, -90.0], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v, a: cameras.project(v, a), (verts, az))
