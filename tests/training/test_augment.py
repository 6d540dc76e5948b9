import pytest
import torch

from fer_emotion.training import cli, engine
from fer_emotion.training.augment import AugmentConfig, relight

from tests.training.test_engine import epochs_in, train_args


def mid_gray_faces(count=64, seed=0):
    """Faces in 100-150, so that a spread or brightness factor within 1 +- 0.3 never reaches 0 or 255."""
    return torch.randint(100, 151, (count, 48, 48), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def test_lighting_off_returns_the_faces_and_draws_nothing():
    faces = mid_gray_faces()
    generator = torch.Generator().manual_seed(3)
    before = generator.get_state()
    assert relight(faces, AugmentConfig(), generator) is faces
    assert torch.equal(generator.get_state(), before)  # so runs without it keep their augmentation draws


def test_contrast_scales_each_faces_spread_about_its_mean_and_keeps_the_mean():
    faces = mid_gray_faces()
    out = relight(faces, AugmentConfig(contrast=0.3), torch.Generator().manual_seed(1))
    pixels = faces.float()
    assert torch.allclose(out.mean((1, 2)), pixels.mean((1, 2)), atol=1e-3)
    ratio = out.std((1, 2)) / pixels.std((1, 2))
    assert ratio.min() >= 0.7 - 1e-4 and ratio.max() <= 1.3 + 1e-4
    assert ratio.max() - ratio.min() > 0.3  # drawn per face, not one factor for the batch


def test_brightness_scales_each_face_by_one_factor_and_clamps_at_white():
    faces = mid_gray_faces()
    out = relight(faces, AugmentConfig(brightness=0.3), torch.Generator().manual_seed(2))
    ratio = out / faces.float()
    per_face = ratio.flatten(1)
    assert torch.allclose(per_face.max(1).values, per_face.min(1).values, atol=1e-5)
    assert per_face.min() >= 0.7 - 1e-5 and per_face.max() <= 1.3 + 1e-5
    white = torch.full((8, 48, 48), 250, dtype=torch.uint8)
    brightened = relight(white, AugmentConfig(brightness=0.5), torch.Generator().manual_seed(2))
    assert brightened.max() == 255.0 and brightened.min() >= 125.0


def test_lighting_options_reach_the_training_batches_and_are_refused_out_of_range(synthetic, tmp_path, monkeypatch):
    seen = []

    def spy(faces, cfg, generator=None):
        out = relight(faces, cfg, generator)
        seen.append((cfg.brightness, cfg.contrast, not torch.equal(out, faces.float())))
        return out

    monkeypatch.setattr(engine, "relight", spy)
    run = tmp_path / "light"
    assert cli.main(train_args(synthetic, run, "--epochs", "1", "--brightness", "0.3", "--contrast", "0.2")) == 0
    assert epochs_in(run) == [1]
    assert seen and all(entry == (0.3, 0.2, True) for entry in seen)
    for option in ("--brightness", "--contrast"):
        with pytest.raises(SystemExit, match=f"{option} takes"):
            cli.main(train_args(synthetic, tmp_path / "bad", option, "1.5"))
    assert not (tmp_path / "bad").exists()


def test_the_whole_batch_pipeline_stays_on_the_faces_device():
    """On a GPU the faces, the draws and every intermediate must share the device, or torch refuses the batch.
    The meta device stands in for one: mixing a CPU tensor into a meta computation fails as it would on a GPU."""
    from fer_emotion.training.augment import augment, mix, normalize, pick_faces

    meta = torch.device("meta")
    with pytest.raises(RuntimeError):
        torch.ones(4, device=meta) + torch.ones(4)  # the check works: a stray CPU tensor is caught
    cfg = AugmentConfig(crop_pad=4, rotate=10, scale=0.1, erase=0.5, noise=0.1, reframe=0.5, brightness=0.3,
                        contrast=0.3)
    faces = torch.empty(16, 48, 48, dtype=torch.uint8, device=meta)
    generator = torch.Generator().manual_seed(0)  # draws on the CPU are moved to the faces' device
    picked = pick_faces(faces, faces.clone(), cfg.reframe, generator)
    x = augment(normalize(relight(picked, cfg, generator), 0.5, 0.25), cfg, generator)
    assert x.device == meta and x.shape == (16, 1, 48, 48)
    for cutmix in (False, True):
        mixed, targets = mix(x, torch.empty(16, 7, device=meta), 0.4, cutmix, generator)
        assert mixed.device == targets.device == meta

