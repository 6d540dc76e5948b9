"""``fer-train train``: one model into a run folder (config, metrics.csv, checkpoints, curves, ONNX)."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from fer_emotion.app.core.shipped import shipped_or_given
from fer_emotion.models import create_model
from fer_emotion.models.registry import canonical_name, default_lr
from fer_emotion.models.weights import INIT_SCHEMES, PretrainedError, imagenet_file, initialise, load_imagenet
from fer_emotion.training import labels as schemes
from fer_emotion.training.augment import AugmentConfig
from fer_emotion.training.checkpoint import (
    CheckpointError, initial_weights, load_checkpoint, load_model_state, run_checkpoint, save_checkpoint,
)
from fer_emotion.training.datasets import (
    SplitData, class_counts, floored, fold_numbers, level_eyes, parse_fold, picked, read_sources, reframed,
    split_sources, subset,
)
from fer_emotion.training.distill import check_settings, cross_fitted, kept_targets, load_teachers
from fer_emotion.training.distributed import (
    DistInfo, all_reduce_mean, barrier, broadcast_from_main, device_for, init_distributed, launched_rank, shutdown,
)
from fer_emotion.training.engine import LossConfig, TrainingDiverged, evaluate, steps_per_epoch, train_one_epoch

log = logging.getLogger(__name__)
TEACHER_TARGETS = "teacher_targets.pt"  # the teachers' targets, read back by --resume (training.distill)
RUN_FILES = ("config.json", "metrics.csv", "last.pt", "best.pt", "curves.png", "report.json", "confusion.png",
             "model.onnx", TEACHER_TARGETS)
PROGRESS_FILES = ("last.pt", "model.onnx")  # a folder without them holds no epoch to resume or model to keep
# half-written files of a killed run
LEFTOVER_PATTERNS = ("last.pt*.tmp", "best.pt*.tmp", "*.onnx.tmp", f"{TEACHER_TARGETS}*.tmp")


@dataclass(frozen=True)
class TrainConfig:
    data: tuple[str, ...]
    ferplus: str | None
    labels: str
    soft: bool
    label_map: dict[str, str]
    arch: str
    epochs: int
    batch_size: int
    optimizer: str
    lr: float
    momentum: float
    weight_decay: float
    schedule: str
    warmup: float
    label_smoothing: float
    class_weights: bool
    mixup: float
    cutmix: bool
    ema: float
    crop_pad: int
    flip: bool
    rotate: float
    scale: float
    erase: float
    noise: float
    mean: float
    std: float
    crop_margin: float
    seed: int
    deterministic: bool
    threads: int
    device: str
    init: str | None
    skip_bad: bool
    out: str
    amp: bool = False  # bfloat16 autocast (GPUs; CPUs with AMX)
    teacher: tuple[str, ...] = ()  # checkpoints, run folders or ONNX models whose predictions are mixed into the targets
    distill: float = 0.5  # share of the teachers' probabilities in each training target
    distill_temperature: float = 2.0
    distill_online: bool = False  # the teachers score each augmented batch, not the clean faces once
    fold: str = ""  # "I/K": the I-th of K fixed folds of the training split is left out (a cross-fitted teacher)
    soft_floor: float = 0.0  # soft target probabilities below this are dropped (FER+ single votes: about 0.1)
    sam: float = 0.0  # sharpness-aware minimisation radius (0: plain steps)
    align: str = "none"  # eyes: every face turned so its eyes are level, as the app then turns this model's crops
    reframe: float = 0.0  # share of training faces shown as the app's detector and crop cut them
    vote_rule: str = "plurality"  # ferplus: the rule of the validation faces that pick best.pt (labels.VOTE_RULES)
    brightness: float = 0.0  # random brightness: each face's pixels times a factor in 1 +- brightness
    contrast: float = 0.0  # random contrast: each face's spread about its mean times a factor in 1 +- contrast
    plateau_patience: int = 5  # schedule plateau: epochs without better validation accuracy before each cut
    plateau_factor: float = 0.5  # schedule plateau: what each cut multiplies the learning rate by
    init_weights: str = "default"  # xavier or kaiming: the first weights drawn by that scheme
    pretrained: str | None = None  # torchvision ImageNet weights: "hub" (torch's cache) or a file
    limit: int = 0  # at most this many training (and validation) faces, drawn with the seed; 0: all
    save_every: int = 1  # epochs between checkpoint writes (a big model on a GPU: seconds an epoch, as long a write)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> TrainConfig:
        values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)}
        values["data"] = tuple(str(p) for p in args.data)
        values["ferplus"] = str(args.ferplus) if args.ferplus else None
        values["init"] = str(args.init) if args.init else None
        values["teacher"] = tuple(str(shipped_or_given(p)) for p in args.teacher)
        values["out"] = str(args.out)
        values["label_map"] = dict(item.split("=", 1) for item in args.label_map if "=" in item)
        values["arch"] = canonical_name(args.arch)
        values["lr"] = args.lr if args.lr is not None else default_lr(values["arch"])
        if getattr(args, "smoke", False):
            values["limit"], values["epochs"] = values["limit"] or 256, 1
        values["threads"] = args.threads if args.threads is not None else 0
        values["device"] = args.device or "auto"
        return cls(**values)

    @property
    def augment(self) -> AugmentConfig:
        return AugmentConfig(self.crop_pad, self.flip, self.rotate, self.scale, self.erase, self.noise, self.reframe,
                             self.brightness, self.contrast)


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    from fer_emotion.training.recipe import recipe_names

    start = parser.add_argument_group("recipe (a shipped model's training; the options below then change it)")
    start.add_argument("--recipe", metavar="NAME|FILE.toml",
                       help=f"train as a shipped model was trained, phases chained and exported: "
                            f"{', '.join(recipe_names())} (training/recipes/NAME.toml), or a recipe file of your "
                            "own written as those are (a copy with one phase changed, say); an option typed "
                            "beside it (--lr, --epochs, --no-amp) holds for every phase")
    data, model, optim, aug, pre, run, research = (parser.add_argument_group(title) for title in (
        "data", "model", "optimisation", "augmentation", "preprocessing (stored in the model)", "run",
        "research (measured in docs/experiments.md; no shipped recipe uses these)"))
    data.add_argument("--data", type=Path, action="append",
                      help="fer2013.csv, an .npz copy, or an image folder ROOT/<split>/<class>/; repeat to merge")
    data.add_argument("--ferplus", type=Path, help="FER+ vote file aligned row by row with the first --data")
    data.add_argument("--labels", choices=sorted(schemes.SCHEMES), default="fer2013", help="label scheme")
    data.add_argument("--soft", action="store_true", help="ferplus: train on the vote distribution, not the most-voted emotion")
    research.add_argument("--soft-floor", type=float, default=0.0, metavar="P",
                          help="with --soft: drop target probabilities below P and renormalise (0.15 drops FER+ "
                               "emotions only one annotator saw)")
    data.add_argument("--label-map", action="append", default=[], metavar="NAME=LABEL",
                      help="map a source's class name onto a scheme label")
    data.add_argument("--vote-rule", choices=sorted(schemes.VOTE_RULES), default="plurality",
                      help="scheme ferplus: the validation faces and labels that score each epoch and pick best.pt, "
                           "as in fer-train eval --vote-rule (plurality: most-voted emotion; majority: the FER+ "
                           "authors' rule); the other rule's accuracy is reported beside it. Training faces are "
                           "the same either way")
    data.add_argument("--skip-bad", action="store_true", help="skip malformed CSV rows instead of stopping")
    data.add_argument("--align", choices=("none", "eyes"), default="none",
                      help="eyes: turn every face so its eyes are level (MTCNN's landmarks); the exported model "
                           "asks the app to turn each face's crop the same way")
    model.add_argument("--arch", default="fernet", help="architecture name (see `fer-train models`)")
    model.add_argument("--init-weights", choices=INIT_SCHEMES, default="default",
                       help="how the first weights are drawn: PyTorch's default, xavier (Glorot uniform) or kaiming "
                            "(He normal)")
    model.add_argument("--pretrained", nargs="?", const="hub", metavar="PATH",
                       help="resnet18, vgg16_bn, efficientnet_v2_s: start from torchvision's ImageNet weights, read "
                            "from PATH or, without one, from torch's cache (torch.hub.get_dir()/checkpoints); never "
                            "downloaded")
    model.add_argument("--init", type=Path, metavar="RUN_OR_CHECKPOINT",
                       help="start from these weights: a run folder (its best.pt), a fer-train checkpoint "
                            "of the same classes, or a state dict")
    optim.add_argument("--epochs", type=int, default=30, help="passes over the training split")
    optim.add_argument("--batch-size", type=int, default=128, help="faces per step (per process under torchrun)")
    optim.add_argument("--optimizer", choices=("sgd", "adam", "adamw"), default="sgd", help="SGD uses Nesterov momentum")
    optim.add_argument("--lr", type=float, help="peak learning rate (default: 0.05; 0.01 for the B* resblock grid, "
                                                "whose deep unpooled stacks diverge at 0.05)")
    optim.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    optim.add_argument("--weight-decay", type=float, default=5e-4, help="on weights, not on biases or norms")
    optim.add_argument("--schedule", choices=("onecycle", "cosine", "plateau", "none"), default="onecycle",
                       help="learning-rate schedule (plateau: --lr until validation accuracy stops rising, then cut "
                            "by --plateau-factor after each --plateau-patience epochs without a better one; with "
                            "--ema it watches the training weights' accuracy, val_raw_acc, as the average lags them)")
    optim.add_argument("--warmup", type=float, default=0.2, help="share of steps spent warming up (onecycle)")
    optim.add_argument("--plateau-patience", type=int, default=5, metavar="EPOCHS",
                       help="schedule plateau: epochs without a better validation accuracy before each cut")
    optim.add_argument("--plateau-factor", type=float, default=0.5, metavar="F",
                       help="schedule plateau: each cut multiplies the learning rate by F (between 0 and 1)")
    optim.add_argument("--label-smoothing", type=float, default=0.1, help="share of each target spread over all classes")
    research.add_argument("--class-weights", action="store_true", help="inverse-frequency class weights")
    research.add_argument("--mixup", type=float, default=0.0, help="mixup alpha (0: off)")
    research.add_argument("--cutmix", action="store_true", help="CutMix instead of mixup")
    optim.add_argument("--teacher", type=Path, action="append", default=[], metavar="MODEL",
                       help="distil from this trained model of the same classes: a run folder (its best.pt), a "
                            "checkpoint or an .onnx file (a shipped model by its name: fer2013_ensemble.onnx); "
                            "repeat to average several. Its targets are kept in the run folder: --resume reads "
                            "them back")
    optim.add_argument("--distill", type=float, default=0.5, metavar="WEIGHT",
                       help="share of the teachers' probabilities in each target (with --teacher)")
    optim.add_argument("--distill-temperature", type=float, default=2.0, metavar="T",
                       help="softens the teachers' probabilities as softmax(logits / T)")
    research.add_argument("--distill-online", action="store_true",
                          help="the teachers score every augmented batch as the student sees it, rather than each "
                               "clean face once before training (slower: the shipped ensemble made a 41 s epoch 47 s)")
    research.add_argument("--fold", default="", metavar="I/K",
                          help="leave the I-th of K fixed folds of the training split out (e.g. 1/4; the folds are "
                               "the same for every run on the same data): K such runs, one per fold, given together "
                               "as --teacher, each teach only the faces they never saw (cross-fitting)")
    research.add_argument("--sam", type=float, default=0.0, metavar="RHO",
                          help="sharpness-aware minimisation: each step's gradient is taken at weights moved RHO "
                               "uphill (e.g. 0.05; about twice the time per epoch; 0: off)")
    run.add_argument("--amp", action=argparse.BooleanOptionalAction, default=False,
                     help="bfloat16 mixed precision: for GPUs, and CPUs with AMX or AVX-512 BF16 (half the step "
                          "time on this project's Intel Xeon and on its Zen 4 AMD EPYC, no faster on an AVX2-only "
                          "EPYC); --no-amp turns off a recipe's")
    optim.add_argument("--ema", type=float, default=0.0,
                       help="EMA decay of the weights, e.g. 0.999 (0: off); validation scores and best.pt use the "
                            "averaged weights, which start as the first weights and keep decay**steps of them "
                            "(0.37 after 1/(1-decay) steps: ~4.5 FER2013 epochs at 0.999 and batch 128), so "
                            "validation scores lag the model in the first epochs (a run too short for its decay is "
                            "warned about)")
    aug.add_argument("--crop-pad", type=int, default=4, help="random crop after reflect padding (0: off)")
    aug.add_argument("--no-flip", dest="flip", action="store_false", help="no horizontal flips")
    aug.add_argument("--rotate", type=float, default=10.0, help="random rotation in degrees (0: off)")
    aug.add_argument("--scale", type=float, default=0.0, help="random zoom, e.g. 0.1 for +-10%%")
    aug.add_argument("--erase", type=float, default=0.0, help="random erasing probability")
    research.add_argument("--noise", type=float, default=0.0, help="Gaussian noise std")
    aug.add_argument("--brightness", type=float, default=0.0, metavar="B",
                     help="random brightness: each face's pixels times a factor drawn in 1 +- B (0-1; 0: off)")
    aug.add_argument("--contrast", type=float, default=0.0, metavar="C",
                     help="random contrast: each face's spread about its own mean times a factor drawn in 1 +- C "
                          "(0-1; 0: off); applied before --brightness")
    aug.add_argument("--reframe", type=float, default=0.0, metavar="SHARE",
                     help="show this share of training faces (0-1) as the app frames them: found by its MTCNN in "
                          "an enlarged copy and cut by its crop (computed once, minutes; cached in "
                          "~/.cache/fer-emotion/reframe); validation then also reports val_framed_acc")
    pre.add_argument("--mean", type=float, default=0.5, help="input = (pixel/255 - mean) / std")
    pre.add_argument("--std", type=float, default=0.25, help="see --mean")
    pre.add_argument("--crop-margin", type=float, default=0.0,
                     help="margin the app adds around a detected face, as a share of its side (FER2013's faces "
                          "fill their images about as MTCNN's box does: 0)")
    run.add_argument("--out", type=Path, help="run folder (required unless --resume)")
    run.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue a run from its last checkpoint")
    run.add_argument("--seed", type=int, default=0, help="seed for weights, shuffling and augmentation")
    run.add_argument("--deterministic", action="store_true", help="deterministic kernels only (slower)")
    run.add_argument("--threads", type=int, help="torch threads (default 0: all cores; with --resume, "
                     "the run's own unless given)")
    run.add_argument("--device", help="auto, cpu or cuda (default auto; with --resume, the run's own unless given)")
    run.add_argument("--overwrite", action="store_true", help="replace an existing run folder's files")
    run.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar (for logs)")
    run.add_argument("--limit", type=int, default=0, metavar="N",
                     help="train on at most N training faces and score on at most N validation faces (drawn with "
                          "--seed): a quick look at a setting")
    run.add_argument("--smoke", action="store_true",
                     help="a run of a few batches to see that everything works: --limit 256 --epochs 1")
    run.add_argument("--stop-after", type=int, default=0, metavar="EPOCH",
                     help="stop after this epoch (continue later with --resume)")
    run.add_argument("--time-limit", type=float, default=0.0, metavar="MINUTES",
                     help="stop after the last epoch that ends within this many minutes of the start, then as "
                          "--stop-after (0: none)")
    run.add_argument("--save-every", type=int, default=1, metavar="EPOCHS",
                     help="write last.pt (and a new best.pt) every this many epochs and at the end, not after "
                          "each, for big models whose epochs take seconds on a GPU (a kill loses up to N-1 epochs)")


def prepare_run_dir(out: Path, overwrite: bool) -> None:
    """An empty run folder at ``out``. One that holds a checkpoint or model is kept unless ``overwrite``; the
    files of a run that stopped before its first checkpoint (config.json, say, after bad data) are replaced."""
    existing = [name for name in RUN_FILES if (out / name).exists()]
    progress = [name for name in existing if name in PROGRESS_FILES]
    if progress and not overwrite:
        raise SystemExit(f"fer-train: {out} already holds a run ({', '.join(existing)}); "
                         "pass --overwrite to replace it or --resume to continue it")
    out.mkdir(parents=True, exist_ok=True)
    for name in existing:
        (out / name).unlink()
    remove_leftovers(out)


def remove_leftovers(out: Path) -> None:
    """Delete the half-written checkpoints and models a killed run left in its folder."""
    leftovers = sorted({path for pattern in LEFTOVER_PATTERNS for path in out.glob(pattern) if path.is_file()})
    for path in leftovers:
        path.unlink()
    if leftovers:
        log.info("removed %d half-written file%s a stopped run left in %s: %s", len(leftovers),
                 "s" if len(leftovers) > 1 else "", out, ", ".join(path.name for path in leftovers))


def build_optimizer(cfg: TrainConfig, model: nn.Module, steps: int):
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        optimizer = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
    elif cfg.optimizer == "adam":
        optimizer = torch.optim.Adam(groups, lr=cfg.lr)
    else:
        optimizer = torch.optim.AdamW(groups, lr=cfg.lr)
    if cfg.schedule == "onecycle":
        # OneCycle needs at least two warm-up steps and two after; tiny runs (tests, smoke runs) get them.
        steps = max(steps, 4)
        warmup = min(max(cfg.warmup, 2 / steps), 1 - 2 / steps)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, cfg.lr, total_steps=steps, pct_start=warmup)
    elif cfg.schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    elif cfg.schedule == "plateau":  # stepped once an epoch with the validation accuracy, not after each batch
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max", factor=cfg.plateau_factor, patience=cfg.plateau_patience)
    else:
        scheduler = None
    return optimizer, scheduler


def loss_config(cfg: TrainConfig, train: SplitData, num_classes: int) -> LossConfig:
    weights = None
    if cfg.class_weights:
        counts = torch.tensor(class_counts(train, num_classes), dtype=torch.float32).clamp(min=1)
        weights = counts.sum() / (num_classes * counts)
    return LossConfig(cfg.label_smoothing, weights, cfg.mixup, cfg.cutmix, sam=cfg.sam)


def read_metrics(path: Path) -> list[dict]:
    """A run's metrics.csv as one dict of strings per epoch."""
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def write_metrics_row(path: Path, row: dict) -> None:
    """Append one epoch's row; a column the file lacks (a run resumed by a newer fer-train) is added to it,
    empty in the earlier rows."""
    rows = read_metrics(path) if path.exists() else []
    fields = list(rows[0]) if rows else []
    added = [key for key in row if key not in fields]
    with path.open("a" if rows and not added else "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields + added)
        if not rows or added:
            writer.writeheader()
            writer.writerows(rows)
        writer.writerow(row)


def warn_short_ema(decay: float, steps: int, most_kept: float = 0.01) -> None:
    """Warn when the averaged weights would still hold over ``most_kept`` of the untrained first weights at the end.

    The average starts as the first weights and keeps ``decay**steps`` of them; on a small dataset (a folder of a
    few thousand faces) a decay made for FER2013's 224 steps an epoch leaves a model that is mostly noise. The
    docs/experiments.md gives the small-dataset runs behind the 1% default (5% left still cost 10 points there).
    """
    kept = decay ** steps
    if kept > most_kept:
        fits = math.floor(most_kept ** (1 / steps) * 1e4) / 1e4  # rounded down, so it does leave under most_kept
        log.warning("--ema %g over this run's %d steps leaves %.1f%% of the untrained first weights in the averaged "
                    "weights that validation, best.pt and exports use; --ema %.4f or less (or more epochs) leaves "
                    "under %.0f%%", decay, steps, 100 * kept, fits, 100 * most_kept)


def step_plateau(scheduler, stats: dict, dist_info: DistInfo) -> None:
    """Step ReduceLROnPlateau in every process by the main process's watched accuracy (the training weights'
    ``val_raw_acc`` when an average is kept, else ``val_acc``); the main process logs each cut."""
    name = "val_raw_acc" if "val_raw_acc" in stats else "val_acc"
    before = scheduler.optimizer.param_groups[0]["lr"]
    scheduler.step(broadcast_from_main(stats.get(name, 0.0), dist_info))
    after = scheduler.optimizer.param_groups[0]["lr"]
    if after < before and dist_info.is_main:
        waited = scheduler.patience + 1
        log.info("no better %s for %d epoch%s: learning rate %g -> %g", name, waited, "s" if waited > 1 else "",
                 before, after)


@dataclass(frozen=True)
class StopRule:
    """When one command's training stops before the run's last epoch, as an interruption would (to be resumed)."""

    after_epoch: int = 0  # 0: no such epoch
    minutes: float = 0.0  # 0: no time limit; else no epoch is begun that would end after it
    started: float = dataclasses.field(default_factory=time.monotonic)

    def last_epoch(self, epochs: int) -> int:
        return min(epochs, self.after_epoch) if self.after_epoch else epochs

    def out_of_time(self, epoch_seconds: float) -> bool:
        """Whether another epoch as long as the one just done would end past the limit."""
        return bool(self.minutes) and time.monotonic() + epoch_seconds > self.started + 60 * self.minutes


class CheckpointWriter:
    """best.pt and last.pt in a run folder, written every ``every`` epochs and when the run stops.

    best.pt is always written before the last.pt that records its epoch (last.pt never names a best that best.pt
    lacks); between writes a new best is held as a copy in memory.
    """

    def __init__(self, out: Path, every: int) -> None:
        self.out, self.every, self._best = out, max(1, every), None

    def record(self, state: dict, epoch: int, improved: bool, stopping: bool) -> None:
        write = stopping or epoch % self.every == 0
        if improved:
            self._best = state if write else detached_copy(state)
        if not write:
            return
        if self._best is not None:
            save_checkpoint(self._best, self.out / "best.pt")
            self._best = None
        save_checkpoint(state, self.out / "last.pt")


def detached_copy(value):
    """A checkpoint's tensors copied to the CPU, so that training on does not change them."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {key: detached_copy(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(detached_copy(item) for item in value)
    return value


def run_training(cfg: TrainConfig, resume_state: dict | None, progress: bool = True,
                 stop: StopRule | None = None) -> Path:
    """Train per ``cfg`` (continuing ``resume_state`` when given); return the run folder.

    ``stop`` ends this command's training early (after an epoch, or at a time limit), to be resumed later.
    """
    dist_info = init_distributed()
    try:
        return _train(cfg, resume_state, progress, dist_info, stop or StopRule())
    finally:
        shutdown(dist_info)


def restore_generator(generator: torch.Generator, state: torch.Tensor) -> None:
    """Continue the augmentation draws where the checkpoint left them; a run moved between a CPU and a GPU
    (whose generators keep different states) draws afresh from its seed."""
    try:
        generator.set_state(state)
    except (RuntimeError, ValueError):
        log.warning("augmentation draws start again from the seed: the run moved to another kind of device")


def _train(cfg: TrainConfig, resume_state: dict | None, progress: bool, dist_info: DistInfo, stop: StopRule) -> Path:
    out = Path(cfg.out)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed + dist_info.rank)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True)
    device = device_for(dist_info, cfg.device)
    class_names = schemes.SCHEMES[cfg.labels]
    sources = read_sources([Path(p) for p in cfg.data], Path(cfg.ferplus) if cfg.ferplus else None,
                           skip_bad=cfg.skip_bad)
    splits = split_sources(sources, cfg.labels, cfg.label_map)  # training faces: by plurality whatever the rule
    train = splits["train"]
    rule_vals = {"plurality": splits["val"]}
    if cfg.labels == "ferplus":  # validation under every vote rule: the run's rule picks best.pt, the others are reported
        rule_vals.update({rule: split_sources(sources, cfg.labels, cfg.label_map, vote_rule=rule)["val"]
                          for rule in schemes.VOTE_RULES if rule != "plurality"})
    val = rule_vals.pop(cfg.vote_rule)
    if cfg.limit:
        drawn = torch.Generator().manual_seed(cfg.seed)
        train, val = subset(train, cfg.limit, drawn), subset(val, cfg.limit, drawn)
        rule_vals = {rule: subset(other, cfg.limit, torch.Generator().manual_seed(cfg.seed))
                     for rule, other in rule_vals.items()}
    framed_val = None
    if cfg.reframe:  # from the faces as loaded: a levelled model's crops are turned by the detector's roll
        level = cfg.align == "eyes"
        train.reframed = reframed(train.images, cfg.crop_margin, level, progress)
        framed_val = SplitData(reframed(val.images, cfg.crop_margin, level, progress), val.labels, None)
    if cfg.align == "eyes":
        train.images, val.images = level_eyes(train.images), level_eyes(val.images)
        for other in rule_vals.values():
            other.images = level_eyes(other.images)
    if cfg.fold:  # after the reframing, so that its cache of the whole split serves every fold
        fold, folds = parse_fold(cfg.fold)
        left_out = fold_numbers(len(train), folds) == fold
        train = picked(train, ~left_out)
        log.info("fold %s: %d training faces left out for this run to judge as a teacher", cfg.fold,
                 int(left_out.sum()))
    if not cfg.soft:
        train.soft = None
    elif cfg.soft_floor and train.soft is not None:  # hard-label sources have no distribution to floor
        train.soft = floored(train.soft, cfg.soft_floor)
    if len(train) < 2 * dist_info.world or len(val) == 0:
        raise SystemExit(f"fer-train: the data has {len(train)} training and {len(val)} validation faces; at least 2 "
                         "training faces (per process) and 1 validation face are needed")
    teachers = None
    if cfg.teacher:
        try:
            teachers = load_teachers([Path(p) for p in cfg.teacher], class_names, cfg.distill_temperature,
                                     train.images.shape[-1], device, torch.get_num_threads())
        except CheckpointError as err:
            raise SystemExit(f"fer-train: {err}") from None
        try:
            folds = cross_fitted(teachers, cfg.data)
        except ValueError as err:
            raise SystemExit(f"fer-train: {err}") from None
        if folds and (cfg.distill_online or cfg.limit or cfg.fold):
            raise SystemExit("fer-train: cross-fitted teachers (runs with --fold) judge the faces of the whole "
                             "training split they left out, once: not with --distill-online, --limit or --fold")
        if not cfg.distill_online:
            base = train.soft if train.soft is not None else F.one_hot(train.labels, len(class_names)).float()
            train.soft = kept_targets(out / TEACHER_TARGETS, resume_state is not None, dist_info.is_main, teachers,
                                      train.images, base, cfg.distill,
                                      fold_numbers(len(train), folds) if folds else None)
            teachers = None
    if dist_info.is_main:
        counts = ", ".join(f"{n} {c}" for n, c in zip(class_names, class_counts(train, len(class_names))))
        others = "".join(f", {rule} rule {len(faces)}" for rule, faces in rule_vals.items())
        rules = f" ({cfg.vote_rule} rule{others})" if rule_vals else ""
        log.info("train %d faces (%s); val %d%s; test %d", len(train), counts, len(val), rules, len(splits["test"]))

    model = create_model(cfg.arch, len(class_names))
    initialise(model, cfg.init_weights)
    if cfg.pretrained and not cfg.init and resume_state is None:
        try:
            load_imagenet(model, cfg.arch, None if cfg.pretrained == "hub" else Path(cfg.pretrained))
        except PretrainedError as err:
            raise SystemExit(f"fer-train: {err}") from None
    if cfg.init and resume_state is None:  # a resumed run has its own weights; its --init source may be gone
        try:
            load_model_state(model, initial_weights(Path(cfg.init), class_names), cfg.arch, Path(cfg.init))
        except CheckpointError as err:
            raise SystemExit(f"fer-train: {err}") from None
    model = model.to(device, memory_format=torch.channels_last)
    if device.type == "cuda":  # the whole split on the GPU, drawn and augmented there (a few hundred MB at most)
        train = train.to(device)
        torch.backends.cudnn.benchmark = True  # one input size throughout: the fastest kernels are found once
    total_steps = max(1, steps_per_epoch(len(train) // dist_info.world, cfg.batch_size) * cfg.epochs)
    optimizer, scheduler = build_optimizer(cfg, model, total_steps)
    if cfg.ema and not cfg.init and resume_state is None and dist_info.is_main:
        warn_short_ema(cfg.ema, total_steps)
    ema = None
    if cfg.ema:
        ema = torch.optim.swa_utils.AveragedModel(
            model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(cfg.ema), use_buffers=True)
    generator = torch.Generator(device=train.images.device).manual_seed(cfg.seed * 1000 + dist_info.rank)
    start_epoch, best_acc = 1, -1.0
    if resume_state is not None:
        load_model_state(model, resume_state["raw_model"], cfg.arch, out / "last.pt")
        optimizer.load_state_dict(resume_state["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(resume_state["scheduler"])
        if ema is not None and resume_state.get("ema"):
            ema.load_state_dict(resume_state["ema"])
        restore_generator(generator, resume_state["generator"])
        torch.set_rng_state(resume_state["torch_rng"])
        start_epoch, best_acc = resume_state["epoch"] + 1, resume_state["best_acc"]
        if dist_info.is_main:
            truncate_metrics(out / "metrics.csv", resume_state["epoch"])
            log.info("resuming %s at epoch %d (best val_acc so far %.4f)", out, start_epoch, best_acc)
    trained = model
    if dist_info.enabled:
        trained = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    losses = loss_config(cfg, train, len(class_names))
    scored = ema.module if ema is not None else model
    last_epoch, timed_out = stop.last_epoch(cfg.epochs), False
    writer = CheckpointWriter(out, cfg.save_every)
    plateau = cfg.schedule == "plateau"
    per_step = None if plateau else scheduler
    epoch_walls: list[float] = []  # this command's epochs, validation and checkpoints included
    for epoch in range(start_epoch, last_epoch + 1):
        epoch_started = time.monotonic()
        try:
            stats = train_one_epoch(
                trained, train, optimizer, per_step, epoch, batch_size=cfg.batch_size, mean=cfg.mean, std=cfg.std,
                augment_cfg=cfg.augment, loss_cfg=losses, generator=generator, ema=ema, rank=dist_info.rank,
                amp=cfg.amp, world=dist_info.world, device=device, progress=progress and dist_info.is_main,
                teacher=teachers, distill=cfg.distill)
        except TrainingDiverged as err:  # nothing more is written: best.pt and model.onnx stay what they were
            raise SystemExit(f"fer-train: training diverged ({err}); --lr {cfg.lr:g} is too high for {cfg.arch} "
                             f"here: try --lr {cfg.lr / 5:g}") from None
        stats["train_loss"] = all_reduce_mean(stats["train_loss"], dist_info)
        stats["train_acc"] = all_reduce_mean(stats["train_acc"], dist_info)
        lr = optimizer.param_groups[0]["lr"]  # this epoch's, before a plateau cut
        if dist_info.is_main:
            stats.update(evaluate(scored, val, mean=cfg.mean, std=cfg.std, device=device))
            if plateau and ema is not None:  # the rate moves the training weights; the average lags them by epochs
                stats["val_raw_acc"] = evaluate(model, val, mean=cfg.mean, std=cfg.std, device=device)["val_acc"]
        if plateau:
            step_plateau(scheduler, stats, dist_info)
        # the main process's clock decides for every process, so that all stop after the same epoch
        timed_out = epoch < last_epoch and bool(broadcast_from_main(
            float(stop.out_of_time(time.monotonic() - epoch_started)), dist_info))
        if not dist_info.is_main:
            barrier(dist_info)
            if timed_out:
                break
            continue
        if framed_val is not None:
            stats["val_framed_acc"] = evaluate(scored, framed_val, mean=cfg.mean, std=cfg.std, device=device)["val_acc"]
        for rule, other in rule_vals.items():
            stats[f"val_{rule}_acc"] = evaluate(scored, other, mean=cfg.mean, std=cfg.std, device=device)["val_acc"]
        row = {"epoch": epoch, "lr": lr, **{k: round(v, 5) for k, v in stats.items()}}
        write_metrics_row(out / "metrics.csv", row)
        state = {"model": scored.state_dict(), "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict() if scheduler is not None else {},
                 "ema": ema.state_dict() if ema is not None else {}, "raw_model": model.state_dict(),
                 "generator": generator.get_state(), "torch_rng": torch.get_rng_state(), "epoch": epoch,
                 "best_acc": max(best_acc, stats["val_acc"]), "config": dataclasses.asdict(cfg),
                 "classes": list(class_names), "val": {k: stats[k] for k in ("val_acc", "val_loss")}}
        improved = stats["val_acc"] > best_acc
        best_acc = max(best_acc, stats["val_acc"])
        writer.record(state, epoch, improved, stopping=epoch == last_epoch or timed_out)
        notes = f"  framed {stats['val_framed_acc']:.4f}" if framed_val is not None else ""
        notes += f"  raw {stats['val_raw_acc']:.4f}" if "val_raw_acc" in stats else ""
        notes += "".join(f"  {rule} {stats[f'val_{rule}_acc']:.4f}" for rule in rule_vals)
        epoch_walls.append(time.monotonic() - epoch_started)
        left = f"  (~{time_left(epoch_walls, cfg.epochs - epoch)} left)" if epoch < cfg.epochs else ""
        log.info("epoch %d/%d  loss %.4f  train %.4f  val %.4f (best %.4f)%s  %.0fs%s", epoch, cfg.epochs,
                 stats["train_loss"], stats["train_acc"], stats["val_acc"], best_acc, notes, stats["epoch_s"], left)
        barrier(dist_info)
        if timed_out:
            log.info("time limit of %g min: stopped after epoch %d of %d; continue with: fer-train train --resume %s",
                     stop.minutes, epoch, cfg.epochs, out)
            break
    if dist_info.is_main and last_epoch == cfg.epochs and not timed_out:
        finish_run(out, f"val ({cfg.vote_rule})" if rule_vals else "val", val)
    return out


def time_left(epoch_walls: list[float], epochs_left: int) -> str:
    """This phase's time to its last epoch at the pace of the latest three epochs: "3h 05m", "12m", "40s"."""
    recent = epoch_walls[-3:]
    seconds = round(sum(recent) / len(recent) * epochs_left)
    if seconds >= 3600:
        return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m" if seconds >= 60 else f"{seconds}s"


def truncate_metrics(path: Path, epoch: int) -> None:
    """Drop rows of epochs after the checkpoint's: a run killed after writing a row, before its checkpoint."""
    if not path.exists():
        return
    rows = read_metrics(path)
    kept = [row for row in rows if int(row["epoch"]) <= epoch]
    if len(kept) != len(rows):
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(kept)


def finish_run(out: Path, val_name: str = "val", val: SplitData | None = None) -> None:
    """Curves, the best epoch's report on the validation faces (report.json, confusion.png) and its ONNX model."""
    from fer_emotion.training.export import export_checkpoint
    from fer_emotion.training.plots import plot_curves

    plot_curves(out / "metrics.csv", out / "curves.png", val_name)
    if val is not None:
        write_report(out, val, val_name)
    export_checkpoint(out / "best.pt", out / "model.onnx")
    log.info("wrote %s, report.json, confusion.png and %s", out / "curves.png", out / "model.onnx")


def write_report(out: Path, val: SplitData, val_name: str) -> None:
    """Per-class precision, recall and F1 of best.pt on the faces that picked it, and their confusion matrix."""
    import numpy as np

    from fer_emotion.training.evaluate import checkpoint_probabilities
    from fer_emotion.training.metrics import confusion_matrix, report
    from fer_emotion.training.plots import plot_confusion

    probs, names, _ = checkpoint_probabilities(out / "best.pt", val.images.numpy(), False)
    result = report(confusion_matrix(val.labels.numpy(), probs.argmax(1), len(names)), names)
    epoch = load_checkpoint(out / "best.pt")["epoch"]
    result.update(checkpoint="best.pt", epoch=epoch, split=val_name)
    (out / "report.json").write_text(json.dumps(result, indent=2) + "\n")
    title = f"{out.name}, best epoch {epoch}, on {val_name} (accuracy {result['accuracy']:.1%})"
    plot_confusion(np.array(result["confusion_matrix"]), names, out / "confusion.png", title)


def check_before_loading(args: argparse.Namespace) -> None:
    """The mistakes that need no data to find, said before minutes of loading: architecture, label map, paths."""
    classes = schemes.SCHEMES[args.labels]
    try:
        create_model(args.arch, len(classes))
    except KeyError as err:
        raise SystemExit(f"fer-train train: {err.args[0]}") from None
    if args.pretrained:
        try:
            imagenet_file(canonical_name(args.arch))
        except PretrainedError as err:
            raise SystemExit(f"fer-train train: {err}") from None
    known = {schemes.canonical(c) for c in classes}
    for item in args.label_map:
        name, _, label = item.partition("=")
        if not name or not label:
            raise SystemExit(f"fer-train train: --label-map {item!r}: write it as NAME=LABEL, e.g. happiness=happy")
        if schemes.canonical(label) not in known:
            raise SystemExit(f"fer-train train: --label-map {item!r}: {label!r} is not a label of scheme "
                             f"{args.labels} ({', '.join(classes)})")
    for path in [*args.data, *([args.ferplus] if args.ferplus else [])]:  # --init: checked with its best.pt
        if not Path(path).exists():
            raise SystemExit(f"fer-train train: {path}: no such file or folder")


def stop_rule(args: argparse.Namespace) -> StopRule:
    return StopRule(args.stop_after, getattr(args, "time_limit", 0.0))


def resume_state(run: Path) -> dict:
    """The checkpoint ``--resume RUN`` continues from, or a one-line error that says why there is none."""
    if not run.is_dir():
        raise SystemExit(f"fer-train train: --resume {run}: no such run folder")
    if not (run / "last.pt").exists():
        raise SystemExit(f"fer-train train: --resume {run}: no last.pt there (the run stopped before its first "
                         "epoch ended); start it again without --resume")
    remove_leftovers(run)
    return load_checkpoint(run / "last.pt")


def main(args: argparse.Namespace, explicit: dict | None = None) -> int:
    """``fer-train train``; ``explicit``: the options typed on the command line (a recipe applies them to
    every phase)."""
    from fer_emotion.training.recipe import resume_recipe, run_recipe

    if args.resume and (args.resume / "recipe.json").is_file():
        return resume_recipe(args)
    if args.recipe:
        return run_recipe(args, explicit or {})
    if args.resume:
        state = resume_state(args.resume)
        # where the rest of the run continues may differ from where it started: threads and device may change
        machine = {k: v for k, v in (("threads", args.threads), ("device", args.device)) if v is not None}
        cfg = TrainConfig(**{**state["config"], "data": tuple(state["config"]["data"]), **machine})
        run_training(cfg, state, progress=args.progress, stop=stop_rule(args))
        return 0
    if not args.data or not args.out:
        raise SystemExit("fer-train train: --data and --out are required (or --resume RUN_DIR)")
    check_before_loading(args)
    cfg = TrainConfig.from_args(args)
    if cfg.teacher:
        try:
            check_settings(cfg.distill, cfg.distill_temperature, [Path(p) for p in cfg.teacher])
        except ValueError as err:
            raise SystemExit(f"fer-train train: {err}") from None
    if cfg.init and not run_checkpoint(Path(cfg.init)).is_file():
        raise SystemExit(f"fer-train train: {run_checkpoint(Path(cfg.init))}: no such checkpoint to start from")
    if cfg.soft_floor and (not cfg.soft or not 0 < cfg.soft_floor < 1):
        raise SystemExit("fer-train train: --soft-floor takes a probability between 0 and 1 and needs --soft")
    if cfg.sam < 0:
        raise SystemExit("fer-train train: --sam takes a radius of 0 (off) or more")
    if cfg.fold:
        try:
            parse_fold(cfg.fold)
        except ValueError as err:
            raise SystemExit(f"fer-train train: --fold: {err}") from None
        if cfg.limit:
            raise SystemExit("fer-train train: --fold leaves a fold of the whole training split out: not with "
                             "--limit or --smoke")
    if not 0 <= cfg.reframe <= 1:
        raise SystemExit("fer-train train: --reframe takes a share between 0 (off) and 1")
    for name in ("brightness", "contrast"):
        if not 0 <= getattr(cfg, name) <= 1:
            raise SystemExit(f"fer-train train: --{name} takes a factor's spread between 0 (off) and 1")
    if getattr(args, "time_limit", 0) < 0 or cfg.save_every < 1:
        raise SystemExit("fer-train train: --time-limit takes minutes (0: none) and --save-every a number of epochs "
                         "of 1 or more")
    if not 0 < cfg.plateau_factor < 1 or cfg.plateau_patience < 0:
        raise SystemExit("fer-train train: --plateau-factor takes a factor between 0 and 1 and --plateau-patience "
                         "a number of epochs of 0 or more")
    if cfg.vote_rule != "plurality" and cfg.labels != "ferplus":
        raise SystemExit(f"fer-train train: --vote-rule {cfg.vote_rule} is for --labels ferplus, not {cfg.labels}")
    if launched_rank() == 0:  # under torchrun, one process owns the run folder
        prepare_run_dir(Path(cfg.out), args.overwrite)
        (Path(cfg.out) / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2) + "\n")
    started = time.perf_counter()
    run_training(cfg, None, progress=args.progress, stop=stop_rule(args))
    log.info("done in %.1f min", (time.perf_counter() - started) / 60)
    return 0
