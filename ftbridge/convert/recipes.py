"""Durable rebuild recipes: "package.module:function" that rebuilds a DataFrame from scratch."""

from __future__ import annotations

import importlib
import re

from ftbridge.errors import ConfigurationError

_RECIPE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def load_recipe(recipe: str):
    """Import and return the recipe callable; ConfigurationError if it cannot be found."""
    if not isinstance(recipe, str) or not _RECIPE.match(recipe):
        raise ConfigurationError(f"recipe must look like 'package.module:function', got {recipe!r}")
    module_name, func_name = recipe.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"recipe module {module_name!r} cannot be imported: {exc}", recipe=recipe) from exc
    func = getattr(module, func_name, None)
    if not callable(func):
        raise ConfigurationError(f"recipe {recipe!r}: {module_name} has no callable {func_name!r}", recipe=recipe)
    return func


def check_recipe(recipe: str) -> None:
    load_recipe(recipe)


def recipe_service(conv: dict, catalog) -> str | None:
    """Name of a rebuild service able to run the conversion's recipe in this process, if any."""
    return None
