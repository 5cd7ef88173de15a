"""Root of the ``gaitid`` command line.

Each part of the product registers its own subcommands here. Registration must stay cheap:
command modules import heavy libraries (torch, onnxruntime, faiss) inside the command bodies,
so ``gaitid serve`` never loads torch and ``gaitid --help`` starts fast.
"""

from __future__ import annotations

import typer

from gaitid import __version__


def _version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit()


def build_app() -> typer.Typer:
    """Assemble the CLI from every part's ``register`` function."""
    root = typer.Typer(
        name="gaitid",
        help="Gait identification: preprocessing, synthetic data, training, export and serving.",
        no_args_is_help=True,
        add_completion=False,
    )

    @root.callback()
    def _main(
        version: bool = typer.Option(
            False, "--version", callback=_version, is_eager=True, help="Print the version."
        ),
    ) -> None:
        """gaitid command line."""

    from gaitid import commands as core_commands

    core_commands.register(root)
    for module_name in ("gaitid.training.cli", "gaitid.model.cli", "gaitid.service.cli"):
        _register_optional(root, module_name)
    return root


def _register_optional(root: typer.Typer, module_name: str) -> None:
    """Register a part's commands when that part exists in this installation."""
    import importlib

    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            return
        raise
    module.register(root)


app = build_app()
