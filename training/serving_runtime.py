"""How the served network runs on a CPU: torch threads sized to the endpoint's vCPUs, and the
network as a frozen TorchScript graph that oneDNN runs with prepacked weights.

Only torch is needed, which SageMaker's PyTorch inference image has in every network mode: the
graph is traced from model.pt's weights when the model loads (a second or two), so the model
archive carries no program (model.pt stays a weights-only load) and no native wheel, and the
graph always matches the torch that runs it. It is used only when it answers a probe batch
like the eager network (probabilities within TOLERANCE); otherwise serving stays eager, and
says so.

ResNet-18 at 224 px on 2 vCPUs, one image: about half the eager latency (BENCHMARKS.md).
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from pathlib import Path

import torch

# Largest difference from the eager network's probabilities (what the endpoint answers) the
# graph may show on the probe batch.
TOLERANCE = 1e-4
# Batch sizes run at load: the executor's first calls of a graph profile it, and the first
# request should not pay for that.
WARM_UP_BATCHES = (1, 2)


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity mask, capped by a cgroup v2 CPU quota."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cpus = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cpus)


def serving_threads(environ: dict[str, str] | None = None, torchserve: bool | None = None) -> int:
    """Torch threads for one model-server worker: the usable CPUs shared among the workers.

    Workers: SAGEMAKER_MODEL_SERVER_WORKERS; unset, TorchServe's default (one per CPU) inside
    TorchServe, else one (the local server, Evaluate). OMP_NUM_THREADS, when set, wins."""
    env = os.environ if environ is None else environ
    explicit = _positive_int(env.get("OMP_NUM_THREADS"), "OMP_NUM_THREADS")
    if explicit:
        return explicit
    cpus = usable_cpus()
    workers = _positive_int(
        env.get("SAGEMAKER_MODEL_SERVER_WORKERS"), "SAGEMAKER_MODEL_SERVER_WORKERS"
    )
    if workers is None:
        inside = under_torchserve() if torchserve is None else torchserve
        workers = cpus if inside else 1
    return max(1, cpus // workers)


def under_torchserve() -> bool:
    """Whether this process is a TorchServe worker (SageMaker's PyTorch inference image)."""
    return "ts.model_loader" in sys.modules


def _positive_int(raw: str | None, name: str) -> int | None:
    if raw is None or not raw.strip():
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a positive integer, got {raw!r}") from None
    if value < 1:
        raise ValueError(f"{name} must be a positive integer, got {raw!r}")
    return value


def configure_threads(environ: dict[str, str] | None = None) -> int:
    """Set torch's intra-op threads for this worker (and one inter-op thread: a traced
    ResNet forks nothing); returns the intra-op count."""
    threads = serving_threads(environ)
    torch.set_num_threads(threads)
    # Settable once, before any inter-op work: a second model_fn in the process keeps it.
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)
    return threads


def wait_policy(policy_in_effect: str | None) -> str:
    """OpenMP's wait policy as it was read when torch loaded (omp_policy.IN_EFFECT)."""
    return policy_in_effect or "default (spinning)"


def optimize_for_cpu(
    net: torch.nn.Module, image_size: int, generator_seed: int = 0
) -> tuple[torch.nn.Module, str]:
    """(module to serve with, one line saying what it is). The eval-mode CPU network `net`,
    traced, frozen and optimised for inference, when that graph's probabilities on a probe
    batch are within TOLERANCE of `net`'s; `net` itself otherwise (or when tracing fails)."""
    gen = torch.Generator().manual_seed(generator_seed)
    # Inputs as predict_fn makes them: normalised pixels, NHWC memory viewed as NCHW.
    probe = torch.rand((2, image_size, image_size, 3), generator=gen).permute(0, 3, 1, 2)
    probe = (probe - 0.45) / 0.226
    try:
        with torch.inference_mode():
            expected = net(probe)
        # Tracing under no_grad, not inference_mode: freezing needs ordinary tensors. Shape
        # arithmetic traced as constants (TracerWarning) is exact here: every request reaches
        # the network at image_size, and the probe below checks the result anyway.
        # Torch after 2.6 calls freeze and optimize_for_inference deprecated (for
        # torch.compile, which needs a C++ compiler at load); the serving image is 2.6, and
        # should they go, the AttributeError leaves serving eager.
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", FutureWarning)
            traced = torch.jit.trace(net, probe[:1], check_trace=False)
            graph = torch.jit.optimize_for_inference(torch.jit.freeze(traced.eval()))
        with torch.inference_mode():
            for batch in WARM_UP_BATCHES:
                graph(probe[:batch])
            got = graph(probe)
    except Exception as exc:  # an op TorchScript cannot trace or freeze: eager still serves
        first = (str(exc).splitlines() or [""])[0][:200]
        return net, f"eager (tracing failed: {type(exc).__name__}: {first})"
    diff = float((got.softmax(dim=1) - expected.softmax(dim=1)).abs().max())
    if not diff <= TOLERANCE:  # also catches NaN
        return net, f"eager (the optimised graph differs by {diff:.2e} > {TOLERANCE:g})"
    return graph, f"TorchScript, frozen and optimised for inference (max diff {diff:.1e})"


def log(message: str) -> None:
    """One line on stderr, which the model server's log keeps."""
    print(f"bincount serving: {message}", file=sys.stderr, flush=True)
