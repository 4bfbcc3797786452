"""`python -m bot` is the `ankomst` command.

The command line is an adapter (handlers/), which the core never imports. So this alias runs
the console script the package declares (`[project.scripts] ankomst` in pyproject.toml), found
through the installed package's metadata, instead of naming the module that holds it.
"""

from importlib.metadata import entry_points

(command,) = entry_points(group="console_scripts", name="ankomst")
raise SystemExit(command.load()())
