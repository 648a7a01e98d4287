"""Imported first by train.py and inference.py, before torch: makes idle OpenMP threads sleep,
not spin.

With the default (spinning) policy, two torch threads on a busy 2-core machine run 5-10x
slower than one; passive waiting costs next to nothing on dedicated cores. OpenMP reads the
policy once, when torch loads: where a server imports torch before inference.py (SageMaker's
TorchServe worker does), the model's environment must carry OMP_WAIT_POLICY instead.
"""

import os
import sys

# Once torch is loaded the policy is whatever the environment held then.
_given = os.environ.get("OMP_WAIT_POLICY")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# The policy OpenMP runs with in this process (None: its default, spinning).
IN_EFFECT = _given if "torch" in sys.modules else os.environ["OMP_WAIT_POLICY"]
