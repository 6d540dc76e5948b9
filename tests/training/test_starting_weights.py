"""Starting weights: initialisation schemes and torchvision's ImageNet weights from a local file."""

import pytest
import torch
import torchvision

from fer_emotion.models import create_model
from fer_emotion.models.weights import PretrainedError, imagenet_file, initialise, load_imagenet
from fer_emotion.training import cli
from fer_emotion.training.checkpoint import load_checkpoint
from tests.training.test_engine import train_args


def test_xavier_and_kaiming_draw_the_weights_at_their_own_scales():
    torch.manual_seed(0)
    layers = {scheme: create_model("fernet", 7) for scheme in ("xavier", "kaiming")}
    for scheme, model in layers.items():
        initialise(model, scheme)
    conv = {scheme: next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.in_channels == 64)
            for scheme, model in layers.items()}
    fan_in, fan_out = 64 * 9, conv["xavier"].out_channels * 9
    assert conv["xavier"].weight.std().item() == pytest.approx((2 / (fan_in + fan_out)) ** 0.5, rel=0.1)
    assert conv["kaiming"].weight.std().item() == pytest.approx((2 / fan_out) ** 0.5, rel=0.1)
    assert all(float(m.bias.detach().abs().sum()) == 0 for m in layers["xavier"].modules() if isinstance(m, torch.nn.Linear))


@pytest.mark.parametrize("arch, first", [("resnet18", "conv1.weight"), ("vgg16_bn", "features.0.weight")])
def test_imagenet_weights_load_where_they_fit_and_colour_filters_become_gray(tmp_path, arch, first):
    imagenet = getattr(torchvision.models, arch)(weights=None)  # stands for the real file: same names and shapes
    path = tmp_path / imagenet_file(arch)
    torch.save(imagenet.state_dict(), path)
    model = create_model(arch, 7)
    loaded, kept = load_imagenet(model, arch, path)
    ours, theirs = model.state_dict(), imagenet.state_dict()
    middle = "layer3.0.conv1.weight" if arch == "resnet18" else "features.10.weight"
    assert torch.equal(ours[middle], theirs[middle])
    if arch == "vgg16_bn":  # the same 3x3 stem on one channel: the colour filters summed
        assert torch.equal(ours[first], theirs[first].sum(1, keepdim=True)) and first not in kept
    else:  # a 3x3 stem where ImageNet's is 7x7: this network's own
        assert first in kept and ours[first].shape == (64, 1, 3, 3)
    assert any(key.startswith(("fc.", "classifier.")) for key in kept) and loaded > 20


def test_pretrained_runs_from_the_hub_cache_and_says_what_is_missing(synthetic, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    run = tmp_path / "run"
    with pytest.raises(SystemExit, match=r"no ImageNet weights for resnet18 at .*hub/checkpoints/resnet18-.*\.pth"):
        cli.main(train_args(synthetic, run, "--arch", "resnet18", "--pretrained", "--epochs", "1"))
    with pytest.raises(SystemExit, match="--pretrained is for resnet18, vgg16_bn and efficientnet_v2_s, not fernet"):
        cli.main(train_args(synthetic, tmp_path / "r2", "--pretrained"))
    imagenet = torchvision.models.resnet18(weights=None)
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(imagenet.state_dict(), tmp_path / "hub" / "checkpoints" / imagenet_file("resnet18"))
    assert cli.main(train_args(synthetic, run, "--arch", "resnet18", "--pretrained", "--epochs", "1", "--overwrite")) == 0
    assert load_checkpoint(run / "best.pt")["config"]["pretrained"] == "hub"
    with pytest.raises(PretrainedError, match="not a readable state dict"):
        (tmp_path / "junk.pth").write_bytes(b"junk")
        load_imagenet(create_model("resnet18", 7), "resnet18", tmp_path / "junk.pth")


def test_limit_and_smoke_train_on_a_few_faces(synthetic, tmp_path, caplog):
    run = tmp_path / "run"
    with caplog.at_level("INFO"):
        assert cli.main(train_args(synthetic, run, "--limit", "16")) == 0
    assert "train 16 faces" in caplog.text and "val 14" in caplog.text  # 14 validation faces is all there are
    smoke = tmp_path / "smoke"
    assert cli.main(train_args(synthetic, smoke, "--smoke")) == 0
    config = load_checkpoint(smoke / "best.pt")["config"]
    assert (config["limit"], config["epochs"]) == (256, 1)
