"""Mixed precision: which autocast dtype a device computes natively, and the GradScaler it needs.

`torch.cuda.is_bf16_supported()` answers True on a T4 (compute capability 7.5, the default
ml.g4dn.xlarge) because bf16 is emulated there, slower than fp32. Native bf16 tensor cores
start at compute capability 8.0 (A100, A10G, L4, H100); older GPUs get fp16, whose narrow
range needs a GradScaler so that small gradients do not flush to zero.
"""

from __future__ import annotations

import torch

NATIVE_BF16_MAJOR = 8


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """bf16 on GPUs with native bf16, fp16 on older GPUs, None (full fp32) on the CPU."""
    if device.type != "cuda":
        return None
    major, _minor = torch.cuda.get_device_capability(device)
    return torch.bfloat16 if major >= NATIVE_BF16_MAJOR else torch.float16


def grad_scaler(amp_dtype: torch.dtype | None) -> torch.amp.GradScaler:
    """Enabled only for fp16; bf16 has fp32's range and fp32 needs no scaling. A disabled
    scaler passes scale/step/update straight through, so the loop is the same either way."""
    return torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
