"""How the served network runs on a CPU: torch threads sized to the endpoint's vCPUs, and the
network as frozen TorchScript graphs that oneDNN runs.

Two graphs, both traced from model.pt's weights when the model loads (a second or two):
- batches: frozen and optimised for inference (convolutions on prepacked oneDNN weights);
- one image, the common real-time request: the same frozen graph with oneDNN Graph fusion
  (convolution + batch norm + ReLU + add run as fused partitions), served only when it is
  faster on this machine, timed at load (on a 2-vCPU Sapphire Rapids, ResNet-18: ~14 vs
  ~18 ms a forward pass; fusion is specialised to the shape it saw, so batches keep the first).
Only torch is needed, which SageMaker's PyTorch inference image has in every network mode:
the model archive carries no program (model.pt stays a weights-only load) and no native
wheel, and the graphs always match the torch that runs them. Each is used only when it
answers a probe like the eager network (probabilities within TOLERANCE); otherwise serving
falls back (to the batch graph, or eager), and says so in the model server's log.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

# Largest difference from the eager network's probabilities (what the endpoint answers) the
# graph may show on the probe batch.
TOLERANCE = 1e-4
# Batch sizes run at load: the executor's first calls of a graph profile it, and the first
# request should not pay for that.
WARM_UP_BATCHES = (1, 2)
# Runs of the fused one-image graph before it is timed: the profiling executor fuses on a
# graph's second call for a shape.
FUSION_WARM_UP = 3
TIMED_RUNS = 5
# The fused graph serves single images only when at least this much faster than the batch one.
FUSION_GAIN = 0.95


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


class SplitByBatchSize(torch.nn.Module):
    """Single images through `single` (the fused graph), everything else through `batched`."""

    def __init__(self, single: torch.nn.Module, batched: torch.nn.Module) -> None:
        super().__init__()
        self.single, self.batched = single, batched

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.single(x) if x.shape[0] == 1 else self.batched(x)


def optimize_for_cpu(
    net: torch.nn.Module, image_size: int, generator_seed: int = 0
) -> tuple[torch.nn.Module, str]:
    """(module to serve with, one line saying what it is). The eval-mode CPU network `net`,
    traced, frozen and optimised for inference, when that graph's probabilities on a probe
    batch are within TOLERANCE of `net`'s, plus the fused one-image graph when it passes the
    same check and is faster; `net` itself otherwise (or when tracing fails)."""
    gen = torch.Generator().manual_seed(generator_seed)
    # Inputs as predict_fn makes them: normalised pixels, NHWC memory viewed as NCHW.
    probe = torch.rand((2, image_size, image_size, 3), generator=gen).permute(0, 3, 1, 2)
    probe = (probe - 0.45) / 0.226
    try:
        with torch.inference_mode():
            expected = net(probe)
        # Torch after 2.6 calls freeze and optimize_for_inference deprecated (for
        # torch.compile, which needs a C++ compiler at load); the serving image is 2.6, and
        # should they go, the AttributeError leaves serving eager.
        graph = _frozen(net, probe[:1], optimize=True)
        with torch.inference_mode():
            for batch in WARM_UP_BATCHES:
                graph(probe[:batch])
            got = graph(probe)
    except Exception as exc:  # an op TorchScript cannot trace or freeze: eager still serves
        return net, f"eager (tracing failed: {_first_line(exc)})"
    diff = _difference(got, expected)
    if not diff <= TOLERANCE:  # also catches NaN
        return net, f"eager (the optimised graph differs by {diff:.2e} > {TOLERANCE:g})"
    engine = f"TorchScript, frozen and optimised for inference (max diff {diff:.1e})"
    single, note = _fused_single_image(net, graph, probe[:1], expected[:1])
    if single is None:
        return graph, f"{engine}; one image: the same graph ({note})"
    return SplitByBatchSize(single, graph), f"{engine}; one image: {note}"


def _frozen(
    net: torch.nn.Module, example: torch.Tensor, optimize: bool = False
) -> torch.jit.ScriptModule:
    """`net` traced on `example` and frozen; also optimised for inference when `optimize`."""
    # Tracing under no_grad, not inference_mode: freezing needs ordinary tensors. Shape
    # arithmetic traced as constants (TracerWarning) is exact here: every request reaches the
    # network at image_size, and the probe checks the result anyway.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", FutureWarning)
        graph = torch.jit.freeze(torch.jit.trace(net, example, check_trace=False).eval())
        return torch.jit.optimize_for_inference(graph) if optimize else graph


def _fused_single_image(
    net: torch.nn.Module, batch_graph: torch.nn.Module, one: torch.Tensor, expected: torch.Tensor
) -> tuple[torch.nn.Module | None, str]:
    """(the oneDNN Graph fused one-image graph, or None; why). Fusion is a process-wide switch
    read when a graph is optimised for a shape: it is on only while this graph warms up at
    batch size 1, whose plan it then keeps; every other graph and shape is planned without."""
    enable = getattr(torch.jit, "enable_onednn_fusion", None)
    if enable is None:
        return None, "this torch has no oneDNN Graph fusion"
    try:
        enable(True)
        try:
            fused = _frozen(net, one)
            with torch.inference_mode():
                for _ in range(FUSION_WARM_UP):
                    got = fused(one)
        finally:
            enable(False)
    except Exception as exc:
        return None, f"fusion failed: {_first_line(exc)}"
    diff = _difference(got, expected)
    if not diff <= TOLERANCE:
        return None, f"the fused graph differs by {diff:.2e} > {TOLERANCE:g}"
    fused_ms, batch_ms = _median_ms(fused, one), _median_ms(batch_graph, one)
    timing = f"{fused_ms:.1f} ms fused vs {batch_ms:.1f} ms"
    if fused_ms > FUSION_GAIN * batch_ms:
        return None, f"oneDNN Graph fusion is not faster here: {timing}"
    return fused, f"oneDNN Graph fusion ({timing}; max diff {diff:.1e})"


def _median_ms(graph: torch.nn.Module, x: torch.Tensor) -> float:
    times = []
    with torch.inference_mode():
        for _ in range(TIMED_RUNS):
            started = time.perf_counter()
            graph(x)
            times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e3


def _difference(got: torch.Tensor, expected: torch.Tensor) -> float:
    return float((got.softmax(dim=1) - expected.softmax(dim=1)).abs().max())


def _first_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]}"


def log(message: str) -> None:
    """One line on stderr, which the model server's log keeps."""
    print(f"bincount serving: {message}", file=sys.stderr, flush=True)
