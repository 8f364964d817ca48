"""Model shapes, decoder bounds, registries, and that every encoder learns end to end."""

from __future__ import annotations

import pytest
import torch

from recon.models import ENCODERS, Reconstructor, get_encoder
from recon.render import get_renderer
from recon.training import SilhouetteObjective


@pytest.mark.parametrize("name", list(ENCODERS))
def test_encoder_output_shape(name: str) -> None:
    enc = get_encoder(name)
    assert enc(torch.rand(3, 4, 64, 64)).shape == (3, 512)


def test_unknown_encoder_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="baseline, resnet, attention"):
        get_encoder("vgg")


def test_decoder_keeps_vertices_in_unit_cube_and_template_is_sphere() -> None:
    model = Reconstructor("baseline")
    assert model.faces.shape == (1280, 3)
    dec = model.decoder
    big = dec.deform(torch.randn(2, 642, 3) * 50, torch.randn(2, 3) * 50)
    assert big.abs().max() <= 0.5 + 1e-6
    tmpl = dec.template_mesh()
    assert torch.allclose(tmpl.norm(dim=1), torch.full((642,), 0.25), atol=1e-5)


def test_reconstructor_rejects_wrong_channels() -> None:
    with pytest.raises(ValueError, match="RGBA"):
        Reconstructor("baseline")(torch.rand(1, 3, 64, 64))


@pytest.mark.parametrize("name", list(ENCODERS))
def test_each_encoder_trains_end_to_end(name: str) -> None:
    """A few Adam steps on one fixed batch: loss finite and decreasing."""
    torch.manual_seed(0)
    model = Reconstructor(name)
    renderer = get_renderer("softras", sigma=1e-4)
    objective = SilhouetteObjective(model.faces, 642, 5e-3, 5e-4)
    # Targets: a box silhouette seen from two views; inputs carry the alpha.
    img = torch.zeros(2, 4, 64, 64)
    img[:, :, 20:44, 16:48] = 1.0
    batch = {"image_a": img, "image_b": img.flip(-1), "view_a": torch.tensor([0, 3]), "view_b": torch.tensor([6, 9])}
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    losses = []
    for _ in range(8):
        out = objective(model, renderer, model.faces, batch)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(float(out["loss"].detach()))
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0] - 0.02, losses


def test_checkpoint_with_old_offset_head_name_loads():
    """The offsets head was ``decoder.fc_bias`` before it was ``decoder.fc_offsets``: old state_dicts load."""
    torch.manual_seed(0)
    trained = Reconstructor("baseline")
    assert "decoder.fc_offsets.weight" in trained.state_dict()
    old = {k.replace("decoder.fc_offsets.", "decoder.fc_bias."): v for k, v in trained.state_dict().items()}
    assert "decoder.fc_bias.weight" in old and not any("fc_offsets" in k for k in old)
    torch.manual_seed(1)
    fresh = Reconstructor("baseline")
    fresh.load_state_dict(old)  # strict: every key matched after the remap
    for k, v in trained.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v), k
