"""The ``unlearnkit`` command line: the top layer; it calls the engines, nothing calls it.

``app`` holds the core commands (demo, train, unlearn, evaluate, report, methods, datasets);
each feature area's sub-commands live in their own module here (``exact``, ``ntk``,
``memorize``, ``serve``) and are mounted by ``main``. ``common`` has what they share.
"""

# The package sets OMP_WAIT_POLICY=PASSIVE on import (unlearnkit/__init__.py), before any module
# here loads torch: the CLI and the Python API share one thread policy.
from unlearnkit.cli.app import app, main, mount_subcommands

__all__ = ["app", "main", "mount_subcommands"]
