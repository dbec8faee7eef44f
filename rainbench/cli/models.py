"""The derainers: list what is registered (built-ins and installed plug-ins)."""

import click

from rainbench.cli import options
from rainbench.cli.output import emit
from rainbench.models.registry import DerainerSpec, list_derainers


@click.command("models")
@options.as_json("Print as JSON.")
def models_command(as_json) -> None:
    """List the registered derainers (built-ins and installed plug-ins), by name.

    \b
    Example:
      rainbench models
    """
    emit(list_derainers(), as_json, _derainer_lines)


def _derainer_lines(specs: list[DerainerSpec]) -> list[str]:
    width = max((len(s.name) for s in specs), default=0)
    return [
        f"{spec.name:<{width}}  {spec.description}"
        + ("" if spec.source == "built-in" else f"  [{spec.source}]")
        for spec in specs
    ]
