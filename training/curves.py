"""Training curves as JSON (for machines) and PNG (for people).

Train writes them twice: into SM_OUTPUT_DATA_DIR (output.tar.gz, as before) and into
SM_MODEL_DIR (model.tar.gz), where Evaluate finds them and publishes them beside
evaluation.json and in the evaluation report page. The served model ignores them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from atomic_files import write_atomic

# A job named by SageMaker Pipelines (or the local runner): pipelines-<execution id>-<step>...
PIPELINE_JOB = re.compile(r"^pipelines-([a-z0-9]+)-", re.IGNORECASE)


def execution_of(version: str | None) -> str | None:
    """The pipeline execution in a model version (`<training job>-<digest>`, model_export),
    where the training job was started by a pipeline; else None."""
    match = PIPELINE_JOB.match(version or "")
    return match.group(1) if match else None


def curves_title(version: str | None, execution_id: str | None = None) -> str:
    """The plot's title names the pipeline execution and the model version."""
    return f"Training curves\nexecution {execution_id or 'unknown'} · model {version or 'unknown'}"


def write_curves(
    history: list[dict[str, Any]],
    folder: Path,
    title: str = "Training curves",
    best_epoch: int | None = None,
) -> None:
    """folder/curves.json (every epoch's metrics) and folder/curves.png (loss, accuracy, MAE;
    `best_epoch`, the exported one, marked on each panel)."""
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(folder / "curves.json", json.dumps(history, indent=2).encode())
    if not history:
        return

    import matplotlib

    matplotlib.use("Agg")
    import io

    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.9))
    panels = (
        ("loss", ("train_loss", "val_loss")),
        ("accuracy", ("train_acc", "val_acc")),
        ("count MAE", ("val_mae",)),
    )
    for ax, (name, keys) in zip(axes, panels, strict=True):
        for key in keys:
            ax.plot(epochs, [h[key] for h in history], marker="o", label=key)
        if best_epoch is not None:
            ax.axvline(
                best_epoch, color="tab:red", linestyle="--", linewidth=1,
                label=f"best epoch {best_epoch}",
            )  # fmt: skip
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    write_atomic(folder / "curves.png", buf.getvalue())
