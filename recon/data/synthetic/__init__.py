"""The embedded default dataset: procedural ShapeNet-like categories built from primitives.

Every object is a union of closed, convex primitive meshes (boxes and tapered boxes,
cylinders/frusta, ellipsoids) arranged with category-specific structure and random
proportions, part counts and part kinds:

* chair: seat + back (solid or slatted, tilted) + four legs / pedestal with star feet / side
  panels, sometimes arms;
* table: rectangular or round top + four legs / pedestal / trestle panels, sometimes a shelf;
* airplane: fuselage (cylinder + cones, or ellipsoid) + swept wings (low/mid/high, dihedral) +
  tailplane + fin, sometimes engines;
* car: body + cabin (sedan / van / pickup / sports) + four wheels, sometimes a spoiler;
* lamp: base + pole + shade (frustum / dome / sphere), or an arm lamp whose arm points in a
  random direction;
* bench: long seat + 4-6 legs / end panels, sometimes a slatted or solid back and arms;
* sofa, watercraft: optional extra categories (not in the default set).

Frame (ShapeNet-like, kept fixed up to a small random yaw of at most 8 degrees): up is +y,
objects face -z (the side seen from view 0), long axes of cars/airplanes/boats run along z.
Each object is normalised like ShapeNet: bounding box centred at the origin, longest side
``1 - MARGIN``; parts thinner than ``MIN_THICKNESS`` (1.5 voxels) after normalisation are
thickened so that every part is represented in the 32^3 grid.

Ground truth (HDF5 format v2): each object's mesh (the union of its parts) and two grids.
``voxels_exact`` is exact centre sampling: a cell is occupied when its centre lies inside at least
one primitive, tested analytically as the intersection of the primitive mesh's face half-spaces (all
primitives are convex polytopes). ``voxels``, the grid of the default 3D-IoU protocol ``softras``, is
SoftRas's voxelization of the mesh united with the same centre sampling on SoftRas's grid
(``recon.data.ground_truth.ground_truth_grid``): SoftRas marks every cell the surface touches,
so its grid of a thin part is about twice as thick as the centre sampling (IoU 0.61 between the
two on the default test objects), and only a grid made the same way lets a perfect prediction
score 1. Under ``softras`` the thickening above is no longer needed for the grid (thin parts keep
their cells); it stays so that the objects, their images and the ``exact`` grid are unchanged.
Objects are deterministic per ``(seed, category, index)``; the index of split
``s`` object ``i`` is ``SPLIT_OFFSET[s] + i``, so changing the train size never changes the
val/test objects.

Modules: ``primitives`` (convex parts, exact occupancy), ``shapes`` (one builder per category),
``objects`` (normalise, mesh + grids, colour, views), ``build`` (the dataset file).
"""

from recon.data.synthetic.build import SPLIT_OFFSET, build_synthetic, resolve_categories, split_sizes
from recon.data.synthetic.objects import MARGIN, MIN_THICKNESS, make_object, make_parts, object_record, render_object
from recon.data.synthetic.shapes import CATEGORIES, DEFAULT_CATEGORIES

__all__ = [
    "CATEGORIES",
    "DEFAULT_CATEGORIES",
    "SPLIT_OFFSET",
    "MARGIN",
    "MIN_THICKNESS",
    "make_parts",
    "make_object",
    "render_object",
    "object_record",
    "build_synthetic",
    "resolve_categories",
    "split_sizes",
]
