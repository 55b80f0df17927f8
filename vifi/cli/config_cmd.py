"""`vifi config show RECIPE [--set …]` (the resolved YAML a run would use) and `vifi recipes` (what ships)."""

from __future__ import annotations

from typing import List, Optional

import typer

config_app = typer.Typer(help="Inspect run configurations.\n\nExample: vifi config show k400 --set train.lr=1e-5",
                         no_args_is_help=True)


@config_app.command("show", help="Print the resolved YAML of a recipe or config file, with --set overrides applied "
                                 "(what finetune/prompt would run and save as config.yaml).\n\n"
                                 "Example: vifi config show demo --set train.epochs=2")
def show(
    recipe: str = typer.Argument(..., help="recipe name (see `vifi recipes`) or a YAML config path"),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="override, e.g. --set train.lr=1e-5 (repeatable)"),
) -> None:
    from vifi import console
    from vifi.config import dump_config, load_config

    console.result(dump_config(load_config(recipe, list(set_ or []))))


def recipes() -> None:
    from vifi import console
    from vifi.recipe_index import list_recipes

    rows = list_recipes()
    width = max(len(r["name"]) for r in rows)
    pwidth = max(len(r["protocol"]) for r in rows)
    console.result("\n".join(f"{r['name']:<{width}}  {r['protocol']:<{pwidth}}  {r['description']}" for r in rows))


def register(app: typer.Typer) -> None:
    app.add_typer(config_app, name="config")
    app.command("recipes", help="List the shipped recipes: name, protocol, one line each.\n\n"
                                "Example: vifi recipes | grep fewshot")(recipes)
