"""Training curves as JSON (for machines) and PNG (for people)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from atomic_files import write_atomic


def write_curves(history: list[dict[str, Any]], folder: Path) -> None:
    """folder/curves.json (every epoch's metrics) and folder/curves.png (loss, accuracy, MAE)."""
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(folder / "curves.json", json.dumps(history, indent=2).encode())
    if not history:
        return

    import matplotlib

    matplotlib.use("Agg")
    import io

    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    panels = (
        ("loss", ("train_loss", "val_loss")),
        ("accuracy", ("train_acc", "val_acc")),
        ("count MAE", ("val_mae",)),
    )
    for ax, (title, keys) in zip(axes, panels, strict=True):
        for key in keys:
            ax.plot(epochs, [h[key] for h in history], marker="o", label=key)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    write_atomic(folder / "curves.png", buf.getvalue())
