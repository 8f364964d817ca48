"""The one category table (ShapeNet synset ids -> names) and how a user's ``--classes`` list is resolved."""

from __future__ import annotations

from typing import Iterable, Sequence

from recon.errors import ConfigError

__all__ = ["SHAPENET_CLASSES", "category_name", "resolve_categories"]

# The 13 ShapeNet classes of the SoftRas/NMR renders; the synthetic dataset uses 8 of these ids.
SHAPENET_CLASSES: dict[str, str] = {
    "02691156": "airplane",
    "02828884": "bench",
    "02933112": "cabinet",
    "02958343": "car",
    "03001627": "chair",
    "03211117": "display",
    "03636649": "lamp",
    "03691459": "loudspeaker",
    "04090263": "rifle",
    "04256520": "sofa",
    "04379243": "table",
    "04401088": "telephone",
    "04530566": "watercraft",
}


def category_name(key: str) -> str:
    """Human name of a category key: ShapeNet ids get their usual name, anything else is its own name."""
    return SHAPENET_CLASSES.get(key, key)


def resolve_categories(requested: Iterable[str], available: Sequence[str], where: str,
                       kind: str = "category") -> list[str]:
    """Keys of ``available`` named by ``requested`` (each a key, or a name in any case), in request order, once each.

    Raises:
        ValueError: ``"<where>: <kind> 'x' not found; available: 03001627 (chair), ..."``.
    """
    keys: list[str] = []
    for c in requested:
        key = c if c in available else next((k for k in available if category_name(k).lower() == c.lower()), None)
        if key is None:
            raise ConfigError(f"{where}: {kind} {c!r} not found; available: "
                             f"{', '.join(f'{k} ({category_name(k)})' for k in available)}")
        if key not in keys:
            keys.append(key)
    return keys
