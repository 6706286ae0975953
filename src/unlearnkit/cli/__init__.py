"""The ``unlearnkit`` command line: the top layer; it calls the engines, nothing calls it.

``app`` holds the core commands (demo, train, unlearn, evaluate, report, methods, datasets);
each feature area's sub-commands live in their own module here (``exact``, ``ntk``,
``memorize``, ``serve``) and are mounted by ``main``. ``common`` has what they share.
"""

from unlearnkit.cli.app import app, main, mount_subcommands

__all__ = ["app", "main", "mount_subcommands"]
