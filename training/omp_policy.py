"""Imported first by train.py, before torch: makes idle OpenMP threads sleep, not spin.

With the default (spinning) policy, two torch threads on a busy 2-core machine run 5-10x
slower than one; passive waiting costs next to nothing on dedicated cores.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
