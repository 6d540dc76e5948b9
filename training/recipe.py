"""``fer-train train --recipe NAME``: a shipped model's training, phases chained, from ``training/recipes/NAME.toml``
(or ``--recipe FILE.toml``: a recipe of the user's own, a shipped one copied and changed, say).

A recipe lists its phases as the options of ``fer-train train`` (each phase starts from the one before's
settings, and from its best weights); options given on the command line apply to every phase. The run folder
holds one run folder per phase (``phase1``, ``phase2``), ``recipe.json`` (the command's options),
``recipe.toml`` (the recipe as it ran) and the exported ``NAME.onnx``. The same command again, or ``--resume
RUN``, continues where it stopped: finished phases are kept, an unfinished one is resumed from its ``last.pt``;
``--resume`` reads the run's own ``recipe.toml``, so a recipe changed since does not change a run half done.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import tomllib
from importlib import resources
from pathlib import Path

log = logging.getLogger(__name__)
RECIPE_KEYS = {"description", "card", "needs_ferplus", "phase", "export"}
RUN_ONLY = {"data", "ferplus", "out", "init", "resume", "recipe", "overwrite"}  # not a recipe's to set
ONE_COMMAND_ONLY = {"stop_after", "time_limit", "overwrite", "resume"}  # typed options that --resume does not repeat
WHOLE_RUN = {"recipe", "data", "ferplus", "out"}  # typed options that name the run, not a phase's settings
RECIPE_COPY = "recipe.toml"  # the recipe as a run folder's phases were trained, read back by --resume


class RecipeError(ValueError):
    """A recipe that does not exist or cannot be read."""


def recipes_folder() -> Path:
    return Path(str(resources.files("fer_emotion.training") / "recipes"))


def recipe_names() -> list[str]:
    return sorted(path.stem for path in recipes_folder().glob("*.toml"))


def recipe_path(name: str) -> Path:
    """The file of a shipped recipe's ``name``, or ``name`` itself where it is a ``.toml`` file's path."""
    if name.endswith(".toml"):
        if not Path(name).is_file():
            raise RecipeError(f"{name}: no such recipe file")
        return Path(name)
    path = recipes_folder() / f"{name}.toml"
    if not path.is_file():
        raise RecipeError(f"no recipe {name!r}; the recipes are {', '.join(recipe_names())}, or a .toml file "
                          "written as they are")
    return path


def model_name(name: str) -> str:
    """What a recipe's exported model is called: the recipe's name, or its file's name without ``.toml``."""
    return Path(name).stem


def read_recipe(name: str, known: set[str], text: str | None = None) -> dict:
    """The recipe called ``name`` (or its ``text``, as a run folder keeps it), its phase options checked
    against ``known`` (fer-train train's options)."""
    if text is None:
        text = recipe_path(name).read_text()
    try:
        recipe = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise RecipeError(f"recipe {name}: {err}") from None
    unknown = set(recipe) - RECIPE_KEYS
    options = {key for phase in recipe.get("phase", []) for key in phase}
    bad = sorted(unknown | (options - known) | (options & RUN_ONLY))
    if bad or not recipe.get("phase"):
        raise RecipeError(f"recipe {name}: {'unknown keys ' + ', '.join(bad) if bad else 'no [[phase]]'}")
    return recipe


def phase_arguments(base: argparse.Namespace, recipe: dict, explicit: dict, out: Path) -> list[argparse.Namespace]:
    """One ``fer-train train`` namespace per phase: the parser's defaults, the recipe's settings (each phase
    on top of the one before), then the options given on the command line; each later phase starts from the
    earlier one's best weights."""
    settings, phases = {}, []
    for number, phase in enumerate(recipe["phase"], start=1):
        settings.update(phase)
        if "teacher" in phase:  # paths, as the command line's --teacher gives them
            settings["teacher"] = [Path(p) for p in phase["teacher"]]
        values = {**vars(base), **settings, **explicit, "out": out / f"phase{number}", "resume": None,
                  "recipe": None, "init": out / f"phase{number - 1}" if number > 1 else explicit.get("init")}
        phases.append(argparse.Namespace(**values))
    return phases


def run_recipe(args: argparse.Namespace, explicit: dict) -> int:
    """Train every phase not yet done (resuming one that stopped), then export the last phase's best epoch."""
    from fer_emotion.training import train
    from fer_emotion.training.export import export_checkpoint

    explicit = {k: v for k, v in explicit.items() if k not in WHOLE_RUN}
    known = set(vars(args))
    text = getattr(args, "recipe_text", None)  # --resume: the recipe as the run started it
    if text is None:
        text = recipe_path(args.recipe).read_text()
    recipe = read_recipe(args.recipe, known, text)
    if recipe.get("needs_ferplus") and not args.ferplus:
        raise SystemExit(f"fer-train train: recipe {args.recipe} needs the FER+ votes: pass --ferplus PATH")
    if not args.data or not args.out:
        raise SystemExit(f"fer-train train --recipe {args.recipe}: --data and --out are required")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    kept = {k: plain(v) for k, v in explicit.items() if k not in ONE_COMMAND_ONLY}
    record = {"recipe": args.recipe, "options": kept,
              "data": [str(p) for p in args.data], "ferplus": str(args.ferplus) if args.ferplus else None}
    (out / "recipe.json").write_text(json.dumps(record, indent=2) + "\n")
    (out / RECIPE_COPY).write_text(text)
    phases = phase_arguments(args, recipe, explicit, out)
    deadline = time.monotonic() + 60 * args.time_limit if getattr(args, "time_limit", 0) else None
    for number, phase in enumerate(phases, start=1):
        folder = Path(phase.out)
        if (folder / "model.onnx").is_file() and not args.overwrite:
            log.info("recipe %s: phase %d of %d already done (%s)", args.recipe, number, len(phases), folder)
            continue
        if deadline is not None:  # the phases share the command's time limit
            phase.time_limit = (deadline - time.monotonic()) / 60
            if phase.time_limit <= 0:
                log.info("recipe %s: time limit reached before phase %d; continue with: fer-train train --resume %s",
                         args.recipe, number, out)
                return 0
        log.info("recipe %s: phase %d of %d -> %s", args.recipe, number, len(phases), folder)
        if (folder / "last.pt").is_file() and not args.overwrite:
            phase.resume, phase.threads, phase.device = folder, explicit.get("threads"), explicit.get("device")
        train.main(phase)
        if not (folder / "model.onnx").is_file():  # --stop-after or --time-limit ended it early
            log.info("recipe %s stopped in phase %d; continue with: fer-train train --resume %s", args.recipe,
                     number, out)
            return 0
    model = out / f"{model_name(args.recipe)}.onnx"
    export = recipe.get("export", {})
    int8, tta = export.get("int8", False), export.get("tta", "none")
    export_checkpoint(Path(phases[-1].out), model, int8=int8, tta=tta)
    log.info("recipe %s done: %s%s%s", args.recipe, model, " (int8)" if int8 else "",
             ", averaging each face with its mirror" if tta == "flip" else "")
    return 0


def plain(value):
    """An option's value as JSON can hold it (paths as strings)."""
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return str(value) if isinstance(value, Path) else value


def resume_recipe(args: argparse.Namespace) -> int:
    """``--resume RUN`` on a recipe's run folder: the same recipe, data and options again."""
    record = json.loads((Path(args.resume) / "recipe.json").read_text())
    explicit = dict(record["options"])
    for name in ("threads", "device"):  # where the rest runs may differ from where it started
        if getattr(args, name) is not None:
            explicit[name] = getattr(args, name)
    explicit["stop_after"] = args.stop_after
    copy = Path(args.resume) / RECIPE_COPY  # absent in run folders from before 2026-12-07: the recipe read anew
    values = {**vars(args), **explicit, "recipe": record["recipe"], "out": Path(args.resume), "resume": None,
              "recipe_text": copy.read_text() if copy.is_file() else None,
              "data": [Path(p) for p in record["data"]], "ferplus": Path(record["ferplus"]) if record["ferplus"] else None}
    return run_recipe(argparse.Namespace(**values), explicit)
