"""unlearnkit: exact (S3T, SISA), one-shot (Fast-NTK) and memorization-aware (RUM) unlearning.

Importing the package sets the thread policy the CLI uses, so the Python API behaves like the
CLI: idle OpenMP threads sleep instead of spinning (``OMP_WAIT_POLICY=PASSIVE``). The variable
only works before torch loads its OpenMP runtime, so it is set here, where no torch is imported;
a user's own value (even an empty one) is left alone. Measured in results/threads/ (2 threads
beside other jobs): 14.5 s of training with OpenMP's default policy, 3.8 s with PASSIVE. Thread
counts are set by ``unlearnkit.runtime.configure(threads=...)`` (the CLI's ``--threads``).
"""

import os
import sys

__version__ = "0.1.0"

if "torch" not in sys.modules:  # too late once torch is loaded: configure() says so then
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
