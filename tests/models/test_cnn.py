import pytest
import torch

from fer_emotion.models import create_model


def faces(seed: int = 0) -> torch.Tensor:
    return torch.rand(4, 1, 48, 48, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.mark.parametrize("arch, invariant", [("fernet_std", True), ("fernet", False)])
def test_standardised_net_ignores_exposure_and_contrast(arch, invariant):
    torch.manual_seed(0)
    model = create_model(arch, 8).eval()
    for module in model.modules():  # trained-like BatchNorm statistics, so the plain net is not invariant by accident
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
    x = faces()
    with torch.no_grad():
        same = torch.allclose(model(x), model(x * 0.4 + 0.7), atol=1e-4)
    assert same is invariant


def test_flat_head_sees_where_a_feature_is():
    torch.manual_seed(0)
    flat, averaged = create_model("fernet_flat", 8).eval(), create_model("fernet", 8).eval()
    assert sum(p.numel() for p in flat.parameters()) - sum(p.numel() for p in averaged.parameters()) == 256 * 8 * 8
    with torch.no_grad():
        features = torch.zeros(1, 256, 3, 3)
        features[0, :, 0, 0] = 1.0
        moved = features.roll(shifts=(2, 2), dims=(2, 3))
        head = flat[-1]
        assert not torch.allclose(head(features), head(moved))


def test_residual_net_adds_each_stage_input_to_its_second_layer():
    from fer_emotion.models.cnn import Residual

    torch.manual_seed(0)
    residual, plain = create_model("fernet_res", 8).eval(), create_model("fernet", 8).eval()
    assert sum(p.numel() for p in residual.parameters()) == sum(p.numel() for p in plain.parameters())
    blocks = [m for m in residual.modules() if isinstance(m, Residual)]
    assert [b.body[0][0].in_channels for b in blocks] == [32, 64, 128]
    torch.nn.init.zeros_(blocks[0].body[0][0].weight)  # a body that outputs zero leaves only the input
    x = torch.rand(2, 32, 24, 24)
    with torch.no_grad():
        assert torch.equal(blocks[0](x), x)


def test_squeeze_excite_scales_each_channel_by_a_gate_from_its_mean():
    from fer_emotion.models.cnn import SqueezeExcite

    torch.manual_seed(0)
    net = create_model("fernet_se", 7).eval()
    gates = [m for m in net.modules() if isinstance(m, SqueezeExcite)]
    assert [g.gate[1].in_channels for g in gates] == [128, 256]  # after the 6 px and 3 px stages
    excite = gates[0]
    torch.nn.init.zeros_(excite.gate[3].weight)
    with torch.no_grad():
        excite.gate[3].bias.copy_(torch.linspace(-3, 3, 128))
        x = torch.rand(2, 128, 6, 6)
        expected = x * torch.sigmoid(torch.linspace(-3, 3, 128)).view(1, 128, 1, 1)
        assert torch.allclose(excite(x), expected)
        assert net(torch.rand(3, 1, 48, 48)).shape == (3, 7)


def test_vgg_mid_is_vgg13m_at_half_width():
    vgg13m = create_model("vgg13m", 7)
    full, half = vgg13m.state_dict(), create_model("vgg_mid", 7).state_dict()
    assert sum(p.numel() for p in vgg13m.parameters()) == 13_346_631  # as its checkpoints hold
    assert list(full) == list(half)  # the same layers under the same names: one builder for both
    first, last = "0.0.weight", [k for k in full if full[k].dim() == 2][-1]  # the last linear layer
    assert (full[first].shape, half[first].shape) == ((64, 1, 3, 3), (32, 1, 3, 3))
    assert (full[last].shape, half[last].shape) == ((7, 1024), (7, 512))
    assert create_model("vgg_mid", 7).eval()(faces()).shape == (4, 7)


def test_vgg_mid_wide_narrows_the_48px_stage_and_widens_the_late_ones():
    model = create_model("vgg_mid_wide", 7).eval()
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [24, 24, 64, 64, 192, 192, 384, 384]
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert linears[0].in_features == 384 * 3 * 3  # the 3x3 map of the last stage, flattened
    assert model(faces()).shape == (4, 7)
