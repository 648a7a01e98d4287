"""Peak memory of Train and Evaluate as the dataset grows: flat, where it used to grow.

Generated 224 px shards in Prepare's format at 2k, 10k and 40k training (and test) images.
Each figure is one whole process's peak RSS (`ru_maxrss`, read by the process itself as it
ends), measured in the same run for:
- **Train**: `training/train.py`, one epoch of smallcnn (the model sees 32 px, so that the
  data path, not a CPU's convolutions, is what runs), 1,000 validation images;
- **Evaluate**: `processing/evaluate.py` on the test split with a packaged smallcnn;
- **in-memory (before)**: what Train did before the data path read shards in place: every
  shard's images loaded and concatenated into one array (with torch imported and a model
  built, as Train had), the peak that grew with the data (about 1.8x its bytes).

    .venv/bin/python -m bench data_memory
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench.report import write_section

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "tests"), str(REPO / "processing")]

from shard_factory import draw_bins, write_shard  # noqa: E402

SIZE = 224
SHARD = 512
SIZES = (2_000, 10_000, 40_000)
VALIDATION = 1_000

# Runs `argv` as __main__ in this process, then prints the peak RSS (KiB) as the last line.
PEAK = """
import resource, runpy, sys
sys.argv = {argv!r}
sys.path[:0] = {path!r}
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit as exit:
    if exit.code not in (0, None):
        raise
print("PEAK_KIB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""

IN_MEMORY = """
import sys
from pathlib import Path
import numpy as np
import torch
sys.path.insert(0, {training!r})
from model import build_model
build_model("smallcnn")
folder = Path({folder!r})
parts = [np.load(p) for p in sorted(folder.glob("*.images.npy"))]
images = torch.from_numpy(np.concatenate(parts))
"""


def write_split(folder: Path, n: int, seed: int) -> Path:
    """`n` images as shards, drawn once per shard-sized block and repeated (pixels are
    pixels to a data path; drawing 40k distinct 224 px bins would take minutes)."""
    block, labels = draw_bins(SHARD, SIZE, seed)
    for k, start in enumerate(range(0, n, SHARD)):
        count = min(SHARD, n - start)
        ids = np.asarray([f"{seed}{start + i:07d}" for i in range(count)])
        write_shard(folder / f"algo-1-{k:05d}", block[:count], labels[:count], ids)
    return folder


def peak_mib(argv: list[str], path: list[str]) -> float:
    code = PEAK.format(argv=argv, path=path)
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=False
    )
    last = [line for line in proc.stdout.splitlines() if line.startswith("PEAK_KIB")]
    if proc.returncode or not last:
        raise RuntimeError(f"{argv[0]} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return int(last[-1].split()[1]) / 1024


def in_memory_mib(folder: Path) -> float:
    script = IN_MEMORY.format(training=str(REPO / "training"), folder=str(folder))
    code = PEAK.format(argv=["-c"], path=[]).replace(
        'runpy.run_path(sys.argv[0], run_name="__main__")', f"exec({script!r})"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    last = [line for line in proc.stdout.splitlines() if line.startswith("PEAK_KIB")]
    if proc.returncode or not last:
        raise RuntimeError(f"in-memory load failed:\n{proc.stderr[-3000:]}")
    return int(last[-1].split()[1]) / 1024


def packaged_model(folder: Path) -> Path:
    sys.path[:0] = [str(REPO / "training")]
    import torch
    from model import build_model
    from model_export import export_model_dir

    torch.manual_seed(0)
    export_model_dir(folder, build_model("smallcnn").state_dict(), "smallcnn", 32)
    return folder


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        root = Path(tmp)
        validation = write_split(root / "validation", VALIDATION, seed=2)
        model = packaged_model(root / "model")
        for n in SIZES:
            train_dir = write_split(root / f"train-{n}", n, seed=1)
            gib = sum(p.stat().st_size for p in train_dir.glob("*.images.npy")) / 2**30
            train = peak_mib(
                [
                    "training/train.py", "--train", str(train_dir), "--validation",
                    str(validation), "--arch", "smallcnn", "--image_size", "32", "--epochs",
                    "1", "--pretrained", "false", "--checkpoint_dir", "", "--model_dir",
                    str(root / "out-model"), "--output_data_dir", str(root / "out-data"),
                ],
                [str(REPO / "training")],
            )  # fmt: skip
            evaluate = peak_mib(
                [
                    "processing/evaluate.py", "--model-dir", str(model), "--test-dir",
                    str(train_dir), "--output-dir", str(root / "evaluation"),
                ],
                [str(REPO / "processing")],
            )  # fmt: skip
            before = in_memory_mib(train_dir)
            rows.append((n, gib, train, evaluate, before))
            print(rows[-1], flush=True)
            for p in train_dir.iterdir():  # keep the disk use to one size at a time
                p.unlink()
    write_section("data_memory", report(rows))


def report(rows: list[tuple[int, float, float, float, float]]) -> str:
    lines = [
        "## Memory of Train and Evaluate as the data grows",
        "",
        f"Generated {SIZE} px shards in Prepare's format ({SHARD} images a shard, "
        f"{SIZE * SIZE * 3 / 1024:.0f} KiB an image). Peak RSS of the whole process "
        "(`ru_maxrss`), each run in its own process, all in one bench run. Train: one epoch of "
        f"smallcnn at 32 px model input over the train split, {VALIDATION:,} validation images. "
        "Evaluate: the same images as its test split. In-memory (before): every shard loaded "
        "and concatenated, as Train did until the data path read shards in place.",
        "",
        "| images | shard bytes | Train peak RSS | Evaluate peak RSS | in-memory (before) |",
        "|---:|---:|---:|---:|---:|",
    ]
    for n, gib, train, evaluate, before in rows:
        lines.append(
            f"| {n:,} | {gib:.2f} GiB | {train:,.0f} MiB | {evaluate:,.0f} MiB | "
            f"{before:,.0f} MiB |"
        )
    first, last = rows[0], rows[-1]
    lines += [
        "",
        f"From {first[0]:,} to {last[0]:,} images ({last[0] // first[0]}x the data): Train's "
        f"peak x{last[2] / first[2]:.2f}, Evaluate's x{last[3] / first[3]:.2f}, the in-memory "
        f"load's x{last[4] / first[4]:.2f}. Shard bytes for the whole dataset (~536k images at "
        f"{SIZE} px): {536_000 * SIZE * SIZE * 3 / 1e9:.0f} GB.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
