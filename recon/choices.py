"""The names command-line flags choose from, written once and importable without torch.

``recon.config`` builds every command's flags (and their ``--help``) from these before anything
heavy is imported; the modules that implement the names import them from here (``recon.ops.voxelize``,
``recon.models.precision``, ``recon.data.schema``, ``recon.cameras``) or are checked against them
by the tests (the renderer and encoder registries, which map each name onto its code).
"""

from __future__ import annotations

from recon.errors import ConfigError

__all__ = ["BACKENDS", "RGBA_BACKENDS", "IMPLS", "ENCODERS", "COLOUR_HEADS", "PRECISIONS", "COMPUTE_PRECISIONS",
           "PRECISION_HELP", "PROTOCOLS", "DEFAULT_PROTOCOL", "SOFTRAS_IOU", "PROTOCOL_ALIASES",
           "PROTOCOL_CHOICES", "STORED_NAMES", "stored_name", "LR_SCHEDULES", "SPLITS", "NUM_VIEWS", "FRAMINGS", "ALL",
           "check_choice", "check_precision", "check_protocol"]

BACKENDS = ("softras", "kaolin", "nvdiffrast", "dibr")  # the renderers (recon.render.BACKENDS: name -> factory)
RGBA_BACKENDS = ("softras", "dibr")  # backends with a colour render
IMPLS = ("auto", "torch", "cpp", "cuda")  # softras / dibr kernel implementations (recon.ops.impl)
ENCODERS = ("baseline", "resnet", "attention")  # recon.models.encoders.ENCODERS: name -> module
COLOUR_HEADS = ("latent", "sample")  # recon.models.colour_heads.COLOUR_HEADS
PRECISIONS = ("auto", "fp32", "bf16")
COMPUTE_PRECISIONS = ("fp32", "bf16")  # what ``auto`` resolves to
PRECISION_HELP = ("auto | fp32 | bf16: bf16 autocasts the encoder/decoder (weights, optimizer, renderer, "
                  "losses stay fp32); auto = bf16 where native and measured faster")
SOFTRAS_IOU = "softras-iou"  # SoftRas/NMR's evaluate_iou voxelization ("softras" before: the backend's name)
PROTOCOLS = (SOFTRAS_IOU, "exact")  # 3D-IoU protocols (recon.ops.voxelize)
DEFAULT_PROTOCOL = SOFTRAS_IOU
PROTOCOL_ALIASES = {"softras": SOFTRAS_IOU}  # earlier names -> today's (flags, configs, eval records of old runs)
PROTOCOL_CHOICES = PROTOCOLS + tuple(PROTOCOL_ALIASES)  # what a --protocol flag accepts
STORED_NAMES = {SOFTRAS_IOU: "softras", "exact": "exact"}  # the names HDF5 files store (format unchanged)
LR_SCHEDULES = ("step", "cosine")  # recon.training.schedule
SPLITS = ("train", "val", "test")
NUM_VIEWS = 24  # views per object in the datasets (recon.cameras)
FRAMINGS = ("auto", "as-is", "fill")  # how user images are framed (recon.data.image_io.Framing)
ALL = 0  # the one spelling of "no limit" in counts of objects (--val-objects, --max-per-category)


def check_choice(value: str, choices: tuple[str, ...], flag: str, what: str = "") -> str:
    """``value`` if it is one of ``choices``, else a one-line ``ConfigError`` naming ``flag``."""
    if value not in choices:
        raise ConfigError(f"{flag} {value!r} unknown{'' if not what else ' ' + what}; expected one of "
                          f"{', '.join(choices)}")
    return value


def check_precision(precision: str, flag: str = "--precision", allow_auto: bool = True) -> None:
    """One-line ``ConfigError`` naming ``flag`` unless ``precision`` is a known precision."""
    check_choice(precision, PRECISIONS if allow_auto else COMPUTE_PRECISIONS, flag)


def check_protocol(protocol: str, flag: str = "--protocol") -> str:
    """The protocol ``protocol`` names (an alias gives today's name), else a one-line ``ConfigError``
    naming ``flag``."""
    name = PROTOCOL_ALIASES.get(protocol, protocol)
    if name not in PROTOCOLS:
        raise ConfigError(f"{flag} {protocol!r}: unknown 3D-IoU protocol; valid: {', '.join(PROTOCOLS)} "
                          f"({', '.join(f'{a} = {b}' for a, b in PROTOCOL_ALIASES.items())})")
    return name


def stored_name(protocol: str) -> str:
    """How dataset files name ``protocol`` (its grid's ``protocol`` attribute and ``voxels_<name>``)."""
    return STORED_NAMES[check_protocol(protocol, "protocol")]
