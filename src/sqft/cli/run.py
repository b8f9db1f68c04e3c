"""`sqft run RECIPE.yaml`: the whole pipeline of a recipe, one artifact per stage, resumable."""

from __future__ import annotations

import argparse

from sqft.cli.common import lazy_import

__all__ = ["add_parser"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="run a recipe: sparsify → quantize → finetune → extract → merge → evaluate",
        description="Run the pipeline a recipe describes. Stages whose artifacts are complete and match the "
        "recipe are skipped; an interrupted fine-tuning resumes from its last checkpoint.",
    )
    p.add_argument("recipe", help="recipe YAML file (see recipes/)")
    p.add_argument("--output", "-o", default=None, help="run directory (default: runs/<recipe name>)")
    p.add_argument("--model", default=None, help="override the recipe's model (hub id or local path)")
    p.add_argument("--device", default=None, help="override the recipe's device (cpu, cuda)")
    p.add_argument(
        "--check",
        action="store_true",
        help="validate the recipe and every input it names (files read and parsed as the stages will read "
        "them, the model's config and weight headers, the device, the run directory), then stop",
    )
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars, warnings only")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    check_recipe_inputs = lazy_import("sqft.preflight").check_recipe_inputs
    overrides = {k: v for k, v in (("model", args.model), ("device", args.device)) if v is not None}
    recipe = lazy_import("sqft.recipe").load_recipe(args.recipe, overrides)
    if args.check:
        notes = check_recipe_inputs(recipe, args.output or f"runs/{recipe.name}")
        print(
            f"recipe '{recipe.name}' is valid: pipeline {recipe.pipeline}, stages {' → '.join(recipe.stages)}"
        )
        for note in notes:
            print(f"  not checked offline: {note}")
        return 0
    state = lazy_import("sqft.pipeline").run_recipe(
        recipe, args.output or f"runs/{recipe.name}", quiet=args.quiet
    )
    for stage, d in state.dirs.items():
        print(f"{stage:<9} {'skipped' if stage in state.skipped else 'done   '} {d}")
    for task, metrics in (state.results or {}).items():
        shown = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
        print(f"{task}: {shown}")
    return 0
