"""train.py as SageMaker runs it: SM_* environment, string hyperparameters, one process."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from model_export import SERVING_FILES, serving_source, weights_digest
from shard_factory import IMAGES, shard_part, write_shard, write_shards
from training_testing import (
    EPOCHS,
    METRICS,
    REPO,
    SMALL_SPLITS,
    TRAIN_PY,
    TrainingRun,
    run_train,
    sm_environment,
)

TRAINING_DIR = REPO / "training"


def test_the_pipeline_defines_a_metric_for_every_name_train_prints():
    # The pipeline package needs the SageMaker SDK, which the container-fidelity run lacks.
    pipeline_definition = pytest.importorskip(
        "pipeline.definition", reason="needs the project package (SageMaker SDK)"
    )
    assert set(pipeline_definition.METRIC_NAMES) == set(METRICS)


def test_one_metric_line_per_epoch_that_the_pipelines_regexes_read(training_run: TrainingRun):
    for name in METRICS:  # METRIC_REGEX is the pipeline's, per name
        values = training_run.metric(name)
        assert len(values) == EPOCHS, f"{name}: {values}"
        assert all(np.isfinite(values)), f"{name}: {values}"
    assert training_run.metric("images_per_s")[0] > 0
    assert all(
        0 <= v <= 1 for v in training_run.metric("val_acc") + training_run.metric("train_acc")
    )
    epochs = re.findall(r"^epoch=(\d+) ", training_run.stdout, re.MULTILINE)
    assert epochs == [str(e) for e in range(1, EPOCHS + 1)]


def test_learns_to_count_well_above_chance(training_run: TrainingRun):
    val_acc = training_run.metric("val_acc")
    train_loss = training_run.metric("train_loss")
    assert max(val_acc) > 0.5, val_acc  # five balanced classes: chance is 0.2
    assert train_loss[-1] < train_loss[0], train_loss


def test_model_dir_holds_weights_metadata_and_serving_code(training_run: TrainingRun):
    model_dir = training_run.model_dir
    state = torch.load(model_dir / "model.pt", map_location="cpu", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    meta = json.loads((model_dir / "model.json").read_text())
    assert meta["arch"] == "smallcnn"
    assert meta["image_size"] == 32
    assert meta["counts"] == [1, 2, 3, 4, 5]
    assert len(meta["mean"]) == len(meta["std"]) == 3
    assert meta["version"] == weights_digest(state)[:12]  # no TRAINING_JOB_NAME here
    # The exported weights are the best epoch's, as model.json says.
    best = max(
        json.loads((training_run.output_dir / "curves.json").read_text()),
        key=lambda h: (h["val_acc"], -h["val_mae"]),
    )
    assert meta["best_epoch"] == best["epoch"]
    assert meta["val_acc"] == pytest.approx(best["val_acc"])

    code = model_dir / "code"
    assert sorted(p.name for p in code.iterdir()) == sorted(SERVING_FILES)
    missing = serving_imports(TRAINING_DIR / "inference.py") - {p.stem for p in code.glob("*.py")}
    assert not missing, f"inference.py imports {missing} from training/ but code/ lacks them"
    for name in SERVING_FILES:
        assert (code / name).read_bytes() == serving_source(name).read_bytes()
    assert (code / "requirements.txt").is_file()


def serving_imports(entry: Path) -> set[str]:
    """Every module under training/ that `entry` imports, directly or through another."""
    local = {p.stem for p in TRAINING_DIR.glob("*.py")}
    found: set[str] = set()
    pending = [entry]
    while pending:
        tree = ast.parse(pending.pop().read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module.split(".")[0]]
            else:
                continue
            for name in set(names) & local - found:
                found.add(name)
                pending.append(TRAINING_DIR / f"{name}.py")
    return found


def test_curves_as_json_and_png_in_the_output_dir(training_run: TrainingRun):
    history = json.loads((training_run.output_dir / "curves.json").read_text())
    assert [h["epoch"] for h in history] == list(range(1, EPOCHS + 1))
    assert [h["val_acc"] for h in history] == pytest.approx(
        training_run.metric("val_acc"), abs=1e-4
    )
    assert set(METRICS) <= set(history[0])
    png = (training_run.output_dir / "curves.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000


def test_no_half_written_files_left_behind(training_run: TrainingRun):
    leftovers = list(training_run.root.rglob(".*"))
    assert not leftovers, leftovers
    assert (training_run.checkpoint_dir / "checkpoint.pt").is_file()


def test_resumed_run_ends_with_the_uninterrupted_runs_weights(
    tmp_path: Path, shard_data: Path, training_run: TrainingRun
):
    checkpoints = tmp_path / "spot-checkpoints"
    first = run_train(
        tmp_path / "first",
        shard_data,
        None,
        "--max_epochs_this_run",
        "3",
        checkpoint_dir=checkpoints,
    )
    assert first.returncode == 0, first.stderr
    assert first.metric("val_acc") == training_run.metric("val_acc")[:3]
    assert not (first.model_dir / "model.pt").exists()  # interrupted: nothing exported yet

    second = run_train(tmp_path / "second", shard_data, checkpoint_dir=checkpoints)
    assert second.returncode == 0, second.stderr
    assert "resuming after epoch 3" in second.stdout
    assert re.findall(r"^epoch=(\d+)", second.stdout, re.MULTILINE) == ["4", "5", "6"]
    for name in ("train_loss", "val_loss", "val_acc", "lr"):
        assert second.metric(name) == training_run.metric(name)[3:], name

    assert_same_tensors(
        torch.load(second.model_dir / "model.pt", weights_only=True),
        torch.load(training_run.model_dir / "model.pt", weights_only=True),
    )
    # The last epoch's weights too (model.pt holds the best epoch's, possibly an early one).
    assert_same_tensors(
        torch.load(checkpoints / "checkpoint.pt", weights_only=True)["model"],
        torch.load(training_run.checkpoint_dir / "checkpoint.pt", weights_only=True)["model"],
    )
    assert (second.model_dir / "model.json").read_text() == (
        training_run.model_dir / "model.json"
    ).read_text()


def assert_same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f"tensors differ: {differ}"


def test_checkpoint_for_another_image_size_is_not_resumed(tmp_path: Path, shard_data: Path, capsys):
    import train

    checkpoints = tmp_path / "checkpoints"
    args = ["--epochs", "1", "--num_threads", "1", "--pretrained", "false", *SMALL_SPLITS]
    common = [
        "--train",
        str(shard_data / "train"),
        "--validation",
        str(shard_data / "validation"),
        "--output_data_dir",
        str(tmp_path / "out"),
        "--checkpoint_dir",
        str(checkpoints),
    ]
    assert (
        train.main([*args, *common, "--model_dir", str(tmp_path / "a"), "--image_size", "48"]) == 0
    )
    assert train.main([*args, *common, "--model_dir", str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "holds smallcnn@48px, not smallcnn@32px; starting afresh" in out
    assert json.loads((tmp_path / "b" / "model.json").read_text())["image_size"] == 32


def test_checkpoint_of_another_job_is_not_resumed(
    tmp_path: Path, shard_data: Path, monkeypatch: pytest.MonkeyPatch, capsys
):
    """A finished job's checkpoint left in the same place must not stand in for a new job's
    training (a spot restart keeps its job name, a new execution does not)."""
    import train

    common = [
        "--epochs", "2", "--num_threads", "1", "--pretrained", "false",
        "--train", str(shard_data / "train"), "--validation", str(shard_data / "validation"),
        "--output_data_dir", str(tmp_path / "out"), "--checkpoint_dir", str(tmp_path / "ckpt"),
        *SMALL_SPLITS,
    ]  # fmt: skip
    monkeypatch.setenv("TRAINING_JOB_NAME", "pipelines-first-train")
    assert train.main([*common, "--model_dir", str(tmp_path / "a")]) == 0
    monkeypatch.setenv("TRAINING_JOB_NAME", "pipelines-second-train")
    assert train.main([*common, "--model_dir", str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "belongs to job 'pipelines-first-train', not 'pipelines-second-train'" in out
    # The second job trained its own epochs rather than exporting the first job's final state.
    assert out.count("epoch=1 ") == 2 and out.count("epoch=2 ") == 2


def test_missing_channel_is_a_clear_error_with_exit_code_2(tmp_path: Path, shard_data: Path):
    env = sm_environment(tmp_path, shard_data / "train", tmp_path / "no-such-channel")
    proc = subprocess.run(
        [sys.executable, str(TRAIN_PY), "--epochs", "1", "--checkpoint_dir", str(tmp_path / "c")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"error: data channel {tmp_path / 'no-such-channel'} does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "model").exists()


def _garbage(folder: Path) -> None:
    (folder / "algo-1-00000.labels.npy").write_bytes(b"this is not an npy file")
    (folder / "algo-1-00000.images.npy").write_bytes(b"nor this")


def _truncated(folder: Path) -> None:
    write_shards(folder, 8)
    images = shard_part(folder / "algo-1-00000", IMAGES)
    images.write_bytes(images.read_bytes()[:3000])


def _no_images(folder: Path) -> None:
    write_shard(
        folder / "algo-1-00000",
        np.zeros((0, 32, 32, 3), np.uint8),
        np.zeros(0, np.int64),
        np.zeros(0, "<U8"),
    )


def _label_six(folder: Path) -> None:
    write_shard(
        folder / "algo-1-00000", np.zeros((2, 32, 32, 3), np.uint8), np.array([1, 6]), ["a", "b"]
    )


def _float_images(folder: Path) -> None:
    write_shard(
        folder / "algo-1-00000", np.zeros((2, 32, 32, 3), np.float32), np.array([1, 2]), ["a", "b"]
    )


def _no_pixels(folder: Path) -> None:
    write_shards(folder, 8)
    shard_part(folder / "algo-1-00000", IMAGES).unlink()


def _mixed_sizes(folder: Path) -> None:
    write_shards(folder, 4, size=32)
    write_shard(
        folder / "algo-1-00009", np.zeros((2, 24, 24, 3), np.uint8), np.array([1, 2]), ["a", "b"]
    )


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda folder: None, "holds no shards (*.labels.npy and *.images.npy)"),
        (_garbage, "is not a readable .npy file"),
        (_truncated, "algo-1-00000.images.npy is truncated"),
        (_no_images, "holds shards but no images"),
        (_label_six, "labels outside (1, 2, 3, 4, 5): [6]"),
        (_float_images, "images must be uint8 [N,S,S,3] in C order, got float32"),
        (_no_pixels, "algo-1-00000 has labels but no algo-1-00000.images.npy"),
        (_mixed_sizes, "shards have different image sizes [24, 32]"),
    ],
    ids=["empty", "garbage", "truncated", "no-images", "label-6", "float", "no-pixels", "sizes"],
)
def test_bad_training_channel_is_a_clear_error_with_exit_code_2(
    tmp_path: Path, shard_data: Path, make, message: str, capsys
):
    import train

    channel = tmp_path / "train"
    channel.mkdir()
    make(channel)
    code = train.main(
        [
            "--train",
            str(channel),
            "--validation",
            str(shard_data / "validation"),
            "--model_dir",
            str(tmp_path / "model"),
            "--checkpoint_dir",
            "",
            "--num_threads",
            "1",
            "--min_train_images",
            "1",
            "--min_validation_images",
            "1",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and str(channel) in err, err
    assert not (tmp_path / "model").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--epochs", "0"], "--epochs must be at least 1, got 0"),
        (["--batch_size", "0"], "--batch_size must be at least 1"),
        (["--learning_rate", "-1"], "--learning_rate must be positive"),
        (["--learning_rate", "inf"], "--learning_rate must be positive and finite, got inf"),
        (["--learning_rate", "nan"], "--learning_rate must be positive and finite, got nan"),
        (["--image_size", "16"], "--image_size must be 0 (the shards' size) or 32..512"),
        (["--image_size", "513"], "--image_size must be 0 (the shards' size) or 32..512"),
        (["--min_train_images", "0"], "--min_train_images must be at least 1, got 0"),
        (["--min_validation_images", "0"], "--min_validation_images must be at least 1"),
        (["--pretrained", "maybe"], "expected imagenet or none (or true/false), got 'maybe'"),
        (["--arch", "vgg16"], "invalid choice: 'vgg16'"),
    ],
)
def test_bad_hyperparameter_is_refused_with_exit_code_2(argv: list[str], message: str, capsys):
    import train

    with pytest.raises(SystemExit) as exit_info:
        train.parse_args(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_hyperparameters_arrive_as_strings_in_either_spelling():
    import train

    args = train.parse_args(
        [
            "--batch-size",
            "16",
            "--learning-rate",
            "1e-3",
            "--pretrained",
            "False",
            "--compile",
            "1",
            "--image-size",
            "64",
            "--sagemaker_extra",
            "x",
        ]
    )
    assert (args.batch_size, args.learning_rate, args.image_size) == (16, 1e-3, 64)
    assert args.pretrained == "none" and args.compile is True


def test_two_ranks_under_torchrun_train_one_model(tmp_path: Path, shard_data: Path):
    """SageMaker's `torch_distributed` launches train.py through torchrun: two CPU ranks
    (gloo) split each epoch, rank 0 alone logs, checkpoints and writes the model."""
    env = sm_environment(tmp_path, shard_data / "train", shard_data / "validation")
    args = [f"--{k}={v}" for k, v in {"epochs": "2", "arch": "smallcnn", "batch_size": "32",
            "pretrained": "false", "seed": "7", "num_threads": "1", "min_train_images": "8",
            "min_validation_images": "8"}.items()]  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(TRAIN_PY), *args, f"--checkpoint_dir={tmp_path / 'checkpoints'}"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "on 2 x cpu" in done.stdout
    # One metric line per epoch, from rank 0 only.
    assert re.findall(r"^epoch=(\d+) ", done.stdout, re.MULTILINE) == ["1", "2"]
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == [
        "code",
        "curves.json",
        "curves.png",
        "model.json",
        "model.pt",
    ]
    state = torch.load(tmp_path / "model" / "model.pt", map_location="cpu", weights_only=True)
    assert all(torch.isfinite(v.float()).all() for v in state.values())
    assert list((tmp_path / "checkpoints").glob("*"))
