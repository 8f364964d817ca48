"""Networks: image encoders (registry), the template-deforming decoder, the full reconstructor,
and the precision they compute in."""

from recon.models.decoder import Decoder
from recon.models.encoders import ENCODERS, get_encoder
from recon.models.precision import PRECISIONS
from recon.models.reconstructor import Reconstructor

__all__ = ["ENCODERS", "get_encoder", "Decoder", "Reconstructor", "PRECISIONS"]
