"""The ``unlearnkit`` command line: the top layer; it calls the engines, nothing calls it.

``app`` holds the core commands (demo, train, unlearn, evaluate, report, methods, datasets);
each feature area's sub-commands live in their own module here (``exact``, ``ntk``,
``memorize``, ``serve``) and are mounted by ``main``. ``common`` has what they share.
"""

import os

# Before torch loads its OpenMP runtime (no module imported here loads torch): idle OpenMP
# threads then sleep instead of spinning, so a multi-threaded command next to other work does not
# burn the cores it waits for. Measured in results/threads/ (2 threads beside other jobs): 14.5 s
# of training with OpenMP's default policy, 3.8 s with PASSIVE, 2.9 s on one thread.
# A user's own OMP_WAIT_POLICY (even an empty one) is left alone.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from unlearnkit.cli.app import app, main, mount_subcommands  # after the variable, on purpose

__all__ = ["app", "main", "mount_subcommands"]
