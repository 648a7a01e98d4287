"""Mixed precision follows native support: bf16 from compute capability 8.0, else fp16 with a
GradScaler, whatever `torch.cuda.is_bf16_supported()` says about emulation."""

from __future__ import annotations

import checkpointing
import precision
import pytest
import torch

GPU = torch.device("cuda", 0)


@pytest.fixture
def gpu_with_capability(monkeypatch: pytest.MonkeyPatch):
    """Pretend a GPU of the given compute capability is present; it emulates bf16 if older."""

    def pretend(major: int, minor: int) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (major, minor))
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)

    return pretend


@pytest.mark.parametrize(("major", "minor"), [(7, 5), (7, 0)])  # T4 (g4dn), V100 (p3)
def test_gpus_without_native_bf16_get_fp16_and_an_enabled_scaler(gpu_with_capability, major, minor):
    gpu_with_capability(major, minor)
    dtype = precision.autocast_dtype(GPU)
    assert dtype == torch.float16
    assert precision.grad_scaler(dtype).is_enabled()


@pytest.mark.parametrize(("major", "minor"), [(8, 0), (8, 6), (8, 9), (9, 0)])
def test_gpus_with_native_bf16_get_bf16_and_no_scaling(gpu_with_capability, major, minor):
    gpu_with_capability(major, minor)
    dtype = precision.autocast_dtype(GPU)
    assert dtype == torch.bfloat16
    assert not precision.grad_scaler(dtype).is_enabled()


def test_the_cpu_keeps_full_precision():
    dtype = precision.autocast_dtype(torch.device("cpu"))
    assert dtype is None
    assert not precision.grad_scaler(dtype).is_enabled()


def test_scaler_state_survives_a_checkpoint_so_a_resumed_run_scales_alike(
    gpu_with_capability, tmp_path
):
    gpu_with_capability(7, 5)
    scaler = precision.grad_scaler(torch.float16)
    # The state a few hundred steps in: backed off after overflows, part-way to growing.
    scaler.load_state_dict(
        {
            "scale": 2048.0,
            "growth_factor": 2.0,
            "backoff_factor": 0.5,
            "growth_interval": 2000,
            "_growth_tracker": 137,
        }
    )
    checkpointing.save_checkpoint(tmp_path, {"scaler": scaler.state_dict()})

    resumed = precision.grad_scaler(torch.float16)
    resumed.load_state_dict(checkpointing.load_checkpoint(tmp_path)["scaler"])
    assert resumed.state_dict() == scaler.state_dict()
    assert resumed.get_scale() == 2048.0
