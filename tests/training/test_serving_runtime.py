"""The CPU serving path: the traced graph answers like the eager network (within 1e-4), falls
back to eager when it cannot, and torch threads follow the endpoint's vCPUs and workers."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import serving_runtime
import torch
from model import build_model
from model_export import export_model_dir
from PIL import Image
from torch import nn
from training_testing import import_serving_code

TOLERANCE = 1e-4


def randomise_batchnorm(net: nn.Module, seed: int) -> nn.Module:
    """Running statistics and affine terms away from their defaults, so folding BatchNorm
    into the convolutions is really exercised (fresh ones are the identity)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=gen) * 0.4 - 0.2)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.rand(n, generator=gen) * 0.2 - 0.1)
    return net


def jpeg(seed: int, height: int = 480, width: int = 640) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (height // 16, width // 16, 3), dtype=np.uint8)
    image = Image.fromarray(pixels).resize((width, height), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture(scope="module", params=["smallcnn", "resnet18"])
def exported(request, tmp_path_factory: pytest.TempPathFactory):
    """(arch, model dir, eager network) for a 224 px model with non-trivial BatchNorm."""
    arch = request.param
    torch.manual_seed(3)
    net = randomise_batchnorm(build_model(arch), seed=4).eval()
    model_dir = tmp_path_factory.mktemp(arch) / "model"
    export_model_dir(model_dir, net.state_dict(), arch, 224)
    return arch, model_dir, net


@pytest.fixture(scope="module")
def served(exported):
    """(inference module, loaded model) from the exported model dir's own code/ folder."""
    _arch, model_dir, _eager = exported
    inf = import_serving_code(model_dir / "code").inference
    return inf, inf.model_fn(str(model_dir))


@pytest.mark.parametrize("batch", [1, 3, 16])
def test_served_probabilities_match_the_eager_network(exported, served, real_bins, batch: int):
    _arch, _model_dir, eager = exported
    inf, model = served
    assert not isinstance(model.net, type(eager)), model.engine  # a graph, not eager
    assert model.engine.startswith("TorchScript")
    photos = [p.read_bytes() for p, _ in real_bins] + [jpeg(s) for s in range(batch)]
    images = torch.from_numpy(np.stack([inf.decode_image(d, 224) for d in photos[:batch]]))
    served = inf.predict_fn(images, model)
    import image_transforms

    with torch.inference_mode():
        logits = eager(image_transforms.to_model_input(images, 224))
    expected = logits.softmax(dim=1)
    assert served["probabilities"].shape == expected.shape
    assert float((served["probabilities"] - expected).abs().max()) <= TOLERANCE
    assert served["counts"] == [int(i) + 1 for i in expected.argmax(dim=1)]
    # The graph itself, not only its softmax: logits within the same tolerance.
    with torch.inference_mode():
        graph_logits = model.net(image_transforms.to_model_input(images, 224))
    assert float((graph_logits - logits).abs().max()) <= TOLERANCE


def test_graph_that_differs_from_eager_is_not_served(monkeypatch):
    net = randomise_batchnorm(build_model("smallcnn"), seed=1).eval()
    monkeypatch.setattr(serving_runtime, "TOLERANCE", -1.0)  # no graph can be this close
    served, engine = serving_runtime.optimize_for_cpu(net, 32)
    assert served is net
    assert engine.startswith("eager (the optimised graph differs by")


class Recorded(nn.Module):
    """`inner`, noting its name in `calls` each time it runs."""

    def __init__(self, inner: nn.Module, name: str, calls: list[str]) -> None:
        super().__init__()
        self.inner, self.name, self.calls = inner, name, calls

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(self.name)
        return self.inner(x)


def test_fused_graph_serves_single_images_and_the_batch_graph_the_rest(monkeypatch):
    net = randomise_batchnorm(build_model("smallcnn"), seed=2).eval()
    monkeypatch.setattr(serving_runtime, "FUSION_GAIN", 1e9)  # fused counts as faster
    served, engine = serving_runtime.optimize_for_cpu(net, 32)
    assert isinstance(served, serving_runtime.SplitByBatchSize), engine
    assert "one image: oneDNN Graph fusion (" in engine
    assert isinstance(served.single, torch.jit.ScriptModule)
    assert isinstance(served.batched, torch.jit.ScriptModule)
    calls: list[str] = []
    served.single = Recorded(served.single, "single", calls)
    served.batched = Recorded(served.batched, "batched", calls)
    for batch in (1, 3, 1, 16):
        x = torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(batch))
        with torch.inference_mode():
            got, expected = served(x).softmax(dim=1), net(x).softmax(dim=1)
        assert float((got - expected).abs().max()) <= TOLERANCE
    assert calls == ["single", "batched", "single", "batched"]


def test_fused_graph_that_is_not_faster_is_not_served(monkeypatch):
    net = build_model("smallcnn").eval()
    monkeypatch.setattr(serving_runtime, "FUSION_GAIN", 0.0)  # nothing is that much faster
    served, engine = serving_runtime.optimize_for_cpu(net, 32)
    assert isinstance(served, torch.jit.ScriptModule)
    assert "one image: the same graph (oneDNN Graph fusion is not faster here: " in engine


def test_fused_graph_is_never_left_switched_on(monkeypatch):
    """Fusion is process-wide: after loading, graphs traced later are planned without it."""
    switched = []
    real = torch.jit.enable_onednn_fusion
    monkeypatch.setattr(
        torch.jit, "enable_onednn_fusion", lambda on: (switched.append(on), real(on))
    )
    serving_runtime.optimize_for_cpu(build_model("smallcnn").eval(), 32)
    assert switched == [True, False]
    assert not torch.jit.onednn_fusion_enabled()


def test_torch_without_fusion_serves_the_batch_graph_for_everything(monkeypatch):
    monkeypatch.delattr(torch.jit, "enable_onednn_fusion")
    served, engine = serving_runtime.optimize_for_cpu(build_model("smallcnn").eval(), 32)
    assert isinstance(served, torch.jit.ScriptModule)
    assert engine.endswith("one image: the same graph (this torch has no oneDNN Graph fusion)")


class NotTraceable(nn.Module):
    def forward(self, x: torch.Tensor):
        return {"logits": x.mean(), "note": "strings cannot leave a traced graph"}


def test_network_that_cannot_be_traced_is_served_eager():
    net = NotTraceable().eval()
    served, engine = serving_runtime.optimize_for_cpu(net, 16)
    assert served is net
    assert engine.startswith("eager (tracing failed:")


def test_threads_are_the_usable_cpus_shared_among_workers(monkeypatch):
    monkeypatch.setattr(serving_runtime, "usable_cpus", lambda: 4)
    assert not serving_runtime.under_torchserve()
    assert serving_runtime.serving_threads({}) == 4
    # TorchServe starts one worker per CPU unless told otherwise.
    assert serving_runtime.serving_threads({}, torchserve=True) == 1
    workers_2 = {"SAGEMAKER_MODEL_SERVER_WORKERS": "2"}
    assert serving_runtime.serving_threads(workers_2, torchserve=True) == 2
    assert serving_runtime.serving_threads({"SAGEMAKER_MODEL_SERVER_WORKERS": "2"}) == 2
    assert serving_runtime.serving_threads({"SAGEMAKER_MODEL_SERVER_WORKERS": "8"}) == 1
    # An explicit OpenMP thread count wins over the division.
    env = {"OMP_NUM_THREADS": "3", "SAGEMAKER_MODEL_SERVER_WORKERS": "4"}
    assert serving_runtime.serving_threads(env) == 3


@pytest.mark.parametrize(
    ("name", "value"),
    [("OMP_NUM_THREADS", "0"), ("SAGEMAKER_MODEL_SERVER_WORKERS", "two")],
)
def test_bad_thread_settings_are_named(name: str, value: str):
    with pytest.raises(ValueError, match=f"{name} must be a positive integer, got '{value}'"):
        serving_runtime.serving_threads({name: value})


def test_usable_cpus_follows_the_affinity_mask():
    assert serving_runtime.usable_cpus() <= len(os.sched_getaffinity(0))
    assert serving_runtime.usable_cpus() >= 1


def test_configure_threads_sets_torchs_intra_op_threads():
    before = torch.get_num_threads()
    try:
        assert serving_runtime.configure_threads({"OMP_NUM_THREADS": "1"}) == 1
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


SERVE_IN_FRESH_PROCESS = """
import os, sys
sys.path.insert(0, sys.argv[1] + "/code")
if sys.argv[2] == "torch-first":
    import torch
import inference
model = inference.model_fn(sys.argv[1])
print("OMP_WAIT_POLICY=" + os.environ.get("OMP_WAIT_POLICY", ""))
"""


@pytest.mark.parametrize("order", ["inference-first", "torch-first"])
def test_openmp_policy_is_passive_where_inference_loads_torch(tmp_path: Path, order: str):
    """Imported before torch, inference.py makes idle OpenMP threads sleep; imported after
    it (SageMaker's TorchServe worker), the model's log says the policy is OpenMP's default,
    which only the endpoint's environment can change."""
    model_dir = tmp_path / "model"
    export_model_dir(model_dir, build_model("smallcnn").state_dict(), "smallcnn", 32)
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    env["SAGEMAKER_MODEL_SERVER_WORKERS"] = "1"
    proc = subprocess.run(
        [sys.executable, "-c", SERVE_IN_FRESH_PROCESS, str(model_dir), order],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("bincount serving:")]
    threads = serving_runtime.usable_cpus()
    assert f"smallcnn on {threads} CPU thread(s)" in line
    assert "TorchScript, frozen and optimised for inference" in line
    if order == "inference-first":
        assert "OpenMP wait PASSIVE" in line
    else:
        assert "OpenMP wait default (spinning)" in line
    assert "OMP_WAIT_POLICY=PASSIVE" in proc.stdout
