"""edgekd: distil a small student from a teacher, export it to edge runtimes, and measure it in one report."""

from __future__ import annotations

from edgekd.version import __version__


def distill_and_export(recipe=None, *, overrides=(), output_dir="export", run_name=None, fresh=False):
    """Python API mirroring `edgekd distill-and-export`: returns a RunResult (run_dir, report dict).

    `recipe` is a Recipe, a TOML path, a built-in name, or None for the built-in 'digits' recipe.
    """
    from pathlib import Path

    from edgekd.pipeline.run import distill_and_export as run
    from edgekd.recipe import Recipe, apply_overrides, load_recipe

    recipe = apply_overrides(recipe, overrides) if isinstance(recipe, Recipe) else load_recipe(recipe, overrides)
    return run(recipe, Path(output_dir), run_name=run_name, fresh=fresh)


__all__ = ["__version__", "distill_and_export"]
