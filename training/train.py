"""Train the bin-item counter: SageMaker training entry point.

Run by SageMaker's training toolkit as `python train.py --epochs 3 ...` (hyperparameters arrive
as strings), or by torchrun for multi-GPU / multi-node jobs (`torch_distributed`). Reads
SM_CHANNEL_TRAIN / SM_CHANNEL_VALIDATION, writes the served model to SM_MODEL_DIR and training
curves to SM_OUTPUT_DATA_DIR, checkpoints every epoch to --checkpoint_dir and resumes from it.

Exit codes: 0 trained and exported (or left early on --max_epochs_this_run), 2 bad arguments or
data (too few images included), 1 training diverged (nothing exported).
"""

from __future__ import annotations

# isort: off
import omp_policy  # noqa: F401  (before torch: OpenMP reads its wait policy once, at load)

# isort: on
import argparse
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import checkpointing
import cpu_allocator
import distributed
import numpy as np
import precision
import torch
from augment import augment_batch
from curves import curves_title, execution_of, write_curves
from data import Batches, DataError, ShardedImages, epoch_indices, require_images
from divergence import TrainingDiverged, nonfinite_names, remedy
from image_transforms import to_model_input
from losses import OrdinalCountLoss, class_weights
from model import ARCHS, NUM_CLASSES, build_model
from model_export import NotExportable, export_model_dir
from torch import nn
from weights import WeightsError, pretrained_argument

METRIC_LINE = (
    "epoch={epoch} train_loss={train_loss:.4f} train_acc={train_acc:.4f} "
    "val_loss={val_loss:.4f} val_acc={val_acc:.4f} val_mae={val_mae:.4f} "
    "lr={lr:.6f} images_per_s={images_per_s:.1f} data_wait_s={data_wait_s:.2f}"
)
# The pixel sizes the networks are built for: below 32 px a ResNet's 32x downsampling has
# nothing left, above 512 px a batch no longer fits the training GPUs (pipeline ImageSize).
IMAGE_SIZE_RANGE = (32, 512)
# Smallest splits worth training on (pipeline MinTrainImages, MinValidationImages). Train: 50
# images per count on average, a few batches an epoch. Validation picks the best epoch: at 100
# images its accuracy is known to about +-0.10 (Wilson 95% half-width near 0.5 is
# 0.98/sqrt(n)); fewer and the choice is noise.
MIN_TRAIN_IMAGES = 250
MIN_VALIDATION_IMAGES = 100
# Steps between NaN/inf checks of the loss: each check waits for the GPU and, with several
# ranks, is a collective; a diverged step is caught within this many, and nothing is
# exported from a diverged run either way (the weights are checked every epoch).
CHECK_EVERY = 50


def str2bool(value: str | bool) -> bool:
    """The toolkit passes booleans as strings: accept true/false, 1/0, yes/no."""
    if isinstance(value, bool):
        return value
    lowered = value.strip().lower()
    if lowered in {"true", "1", "yes", "y"}:
        return True
    if lowered in {"false", "0", "no", "n"}:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--batch_size", "--batch-size", type=int, default=64)
    p.add_argument("--learning_rate", "--learning-rate", type=float, default=3e-3)
    p.add_argument("--weight_decay", type=float, default=5e-4)
    p.add_argument("--arch", choices=ARCHS, default="smallcnn")
    p.add_argument(
        "--image_size",
        "--image-size",
        type=int,
        default=0,
        help="pixels the model sees; 0 = the shards' own size",
    )
    p.add_argument(
        "--pretrained",
        type=pretrained_argument,
        default="imagenet",
        help="imagenet (the weights channel's file; smallcnn has none) or none (from scratch)",
    )
    p.add_argument(
        "--weights",
        default=env("SM_CHANNEL_WEIGHTS"),
        help="the weights channel: ImageNet weight files as published (training/weights.py)",
    )
    p.add_argument("--seed", type=int, default=42)
    p.add_argument(
        "--patience",
        type=int,
        default=5,
        help="stop after this many epochs without a better validation score",
    )
    p.add_argument("--compile", type=str2bool, default=False)
    p.add_argument("--checkpoint_dir", "--checkpoint-dir", default="/opt/ml/checkpoints")
    p.add_argument("--min_train_images", "--min-train-images", type=int, default=MIN_TRAIN_IMAGES)
    p.add_argument(
        "--min_validation_images",
        "--min-validation-images",
        type=int,
        default=MIN_VALIDATION_IMAGES,
    )
    p.add_argument("--warmup_epochs", type=float, default=1.0)
    p.add_argument(
        "--count_loss_weight",
        type=float,
        default=0.5,
        help="weight of the expected-count SmoothL1 term next to cross-entropy",
    )
    p.add_argument("--num_threads", type=int, default=0, help="CPU threads; 0 = all cores")
    p.add_argument(
        "--data_workers",
        type=int,
        default=2,
        help="threads reading batches ahead from the shards (pread releases the GIL)",
    )
    p.add_argument(
        "--max_epochs_this_run",
        type=int,
        default=0,
        help="leave after this many epochs, as a spot interruption would (tests)",
    )
    p.add_argument("--train", default=env("SM_CHANNEL_TRAIN", "/opt/ml/input/data/train"))
    p.add_argument(
        "--validation", default=env("SM_CHANNEL_VALIDATION", "/opt/ml/input/data/validation")
    )
    p.add_argument("--model_dir", default=env("SM_MODEL_DIR", "/opt/ml/model"))
    p.add_argument("--output_data_dir", default=env("SM_OUTPUT_DATA_DIR", "/opt/ml/output/data"))
    args, unknown = p.parse_known_args(argv)
    if unknown:
        print(f"ignoring unknown arguments: {' '.join(unknown)}")
    for name in (
        "epochs",
        "batch_size",
        "min_train_images",
        "min_validation_images",
        "data_workers",
    ):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    if not (math.isfinite(args.learning_rate) and args.learning_rate > 0):
        p.error(f"--learning_rate must be positive and finite, got {args.learning_rate}")
    low, high = IMAGE_SIZE_RANGE
    if args.image_size and not low <= args.image_size <= high:
        p.error(
            f"--image_size must be 0 (the shards' size) or {low}..{high}, got {args.image_size}"
        )
    return args


# What a checkpoint must hold, and of what type, before anything is resumed from it.
CHECKPOINT_FIELDS: dict[str, type | tuple[type, ...]] = {
    "epoch": int,
    "model": dict,
    "optimizer": dict,
    "scheduler": dict,
    "scaler": dict,
    "rng": dict,
    "history": list,
    "best_score": (tuple, list, type(None)),
    "best_state": (dict, type(None)),
    "bad_epochs": int,
    "stopped_early": bool,
    "arch": str,
    "image_size": int,
    "job": str,
}
RNG_FIELDS: dict[str, type | tuple[type, ...]] = {
    "python": tuple,
    "numpy": dict,
    "torch": torch.Tensor,
}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def cosine_with_warmup(total_steps: int, warmup_steps: int, floor: float = 0.01):
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


class Trainer:
    def __init__(self, args: argparse.Namespace, ctx: distributed.DistContext):
        self.args, self.ctx, self.device = args, ctx, ctx.device
        self.train_data = ShardedImages(args.train)
        self.val_data = ShardedImages(args.validation)
        self.image_size = args.image_size or self.train_data.image_size
        self.amp_dtype = precision.autocast_dtype(self.device)
        self.channels_last = True  # faster convolutions on GPUs and on CPUs alike

        seed_everything(args.seed)
        # Every rank reads the weights channel itself (nothing is downloaded, so none waits
        # for another); a missing or damaged file fails every rank alike, with exit code 2.
        try:
            self.model = build_model(
                args.arch, args.pretrained, NUM_CLASSES, args.weights, verbose=ctx.is_main
            )
        except WeightsError as exc:
            raise DataError(str(exc)) from exc
        self.model.to(self.device)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)

        weights = class_weights(self.train_data.labels.cpu(), NUM_CLASSES)
        self.criterion = OrdinalCountLoss(weights, args.count_loss_weight).to(self.device)
        decay, no_decay = [], []
        for p in self.model.parameters():
            (no_decay if p.ndim <= 1 else decay).append(p)
        self.optimizer = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": args.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=args.learning_rate,
            # One fused kernel for every parameter on a GPU, not a few per tensor.
            fused=self.device.type == "cuda",
        )
        per_rank = len(epoch_indices(len(self.train_data), 0, args.seed, ctx.rank, ctx.world_size))
        self.steps_per_epoch = max(1, math.ceil(per_rank / args.batch_size))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            cosine_with_warmup(
                args.epochs * self.steps_per_epoch, int(args.warmup_epochs * self.steps_per_epoch)
            ),
        )
        self.scaler = precision.grad_scaler(self.amp_dtype)  # its state is checkpointed
        self.history: list[dict[str, Any]] = []
        self.best_score: tuple[float, float] | None = None
        self.best_state: dict[str, torch.Tensor] | None = None
        self.bad_epochs = 0
        self.stopped_early = False
        self.start_epoch = 1
        self.checkpoint_dir = (
            checkpointing.usable_checkpoint_dir(args.checkpoint_dir) if ctx.is_main else None
        )
        self._resume()  # before DDP wraps the model, so its first broadcast carries the weights

        self.net: nn.Module = self.model
        if ctx.distributed:
            self.net = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[ctx.local_rank] if self.device.type == "cuda" else None
            )
        if args.compile:
            self.net = torch.compile(self.net)

    # --- one pass -------------------------------------------------------------------------

    def _inputs(self, images: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
        if gen is None:
            return to_model_input(images, self.image_size, channels_last=self.channels_last)
        return augment_batch(images, gen, self.image_size)  # channels_last, as the model

    def _autocast(self):
        return torch.autocast(
            self.device.type, dtype=self.amp_dtype or torch.float32, enabled=bool(self.amp_dtype)
        )

    def train_epoch(self, epoch: int) -> dict[str, float]:
        args, ctx = self.args, self.ctx
        self.net.train()
        gen = torch.Generator().manual_seed(args.seed * 7919 + epoch)
        order = epoch_indices(len(self.train_data), epoch, args.seed, ctx.rank, ctx.world_size)
        # Sums stay on the device: reading them back each step would make the CPU wait for
        # the GPU every step. The loss is checked for NaN/inf every CHECK_EVERY steps instead.
        stats = torch.zeros(3, dtype=torch.float64, device=self.device)  # loss, correct, n
        first_bad = torch.zeros((), dtype=torch.int64, device=self.device)  # 0: none yet
        started = time.perf_counter()
        steps = Batches(self.train_data, order, args.batch_size, self.device, args.data_workers)
        for step, (images, labels) in enumerate(steps, start=1):
            if len(labels) < 2:  # BatchNorm cannot train on a batch of one
                continue
            x = self._inputs(images, gen)
            with self._autocast():
                logits = self.net(x)
                loss = self.criterion(logits, labels)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            # Gradient clipping, if ever added, goes here after self.scaler.unscale_(optimizer).
            self.scaler.step(self.optimizer)  # skipped when fp16 gradients overflowed
            self.scaler.update()
            self.scheduler.step()
            loss = loss.detach().double()
            # The first step whose loss was NaN/inf, recorded without waiting for the GPU.
            first_bad = torch.where((first_bad == 0) & ~torch.isfinite(loss), step, first_bad)
            # In-place adds of device values and Python numbers: no copy, no wait.
            stats[0] += loss * len(labels)
            stats[1] += (logits.argmax(1) == labels).sum()
            stats[2] += len(labels)
            if step % CHECK_EVERY == 0 or step == len(steps):
                self._stop_if_diverged(first_bad, epoch)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - started
        stats = distributed.all_reduce_sum(stats, ctx).cpu()
        images = max(1.0, stats[2].item())
        return {
            "train_loss": stats[0].item() / images,
            "train_acc": stats[1].item() / images,
            "images_per_s": stats[2].item() / max(seconds, 1e-9),
            "data_wait_s": steps.waited,
        }

    def _stop_if_diverged(self, first_bad: torch.Tensor, epoch: int) -> None:
        step = int(first_bad.item())
        # Decided together: a rank that raised alone would leave the others waiting.
        if distributed.any_rank(step > 0, self.ctx):
            where = f"step {step}" if step else "a step on another rank"
            raise TrainingDiverged(
                f"training diverged in epoch {epoch}, {where}: the loss is not finite; "
                f"nothing was exported: {remedy(self.args.learning_rate)}"
            )

    @torch.inference_mode()
    def validate(self) -> dict[str, float]:
        ctx = self.ctx
        self.model.eval()  # the bare module: no DDP hooks, ranks may run different step counts
        order = torch.arange(len(self.val_data))[ctx.rank :: ctx.world_size]
        stats = torch.zeros(4, dtype=torch.float64, device=self.device)  # loss, hit, |err|, n
        batches = Batches(
            self.val_data, order, self.args.batch_size * 2, self.device, self.args.data_workers
        )
        for images, labels in batches:
            with self._autocast():
                logits = self.model(self._inputs(images, None))
            loss = self.criterion(logits.float(), labels)
            pred = logits.argmax(1)
            stats[0] += loss.double() * len(labels)
            stats[1] += (pred == labels).sum()
            stats[2] += (pred - labels).abs().sum()
            stats[3] += len(labels)
        stats = distributed.all_reduce_sum(stats, ctx).cpu()
        images = max(1.0, stats[3].item())
        return {
            "val_loss": stats[0].item() / images,
            "val_acc": stats[1].item() / images,
            "val_mae": stats[2].item() / images,
        }

    # --- checkpoints ------------------------------------------------------------------------

    def state(self, epoch: int) -> dict[str, Any]:
        return {
            "epoch": epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": checkpointing.rng_state(),
            "history": self.history,
            "best_score": self.best_score,
            "best_state": self.best_state,
            "bad_epochs": self.bad_epochs,
            "stopped_early": self.stopped_early,
            "arch": self.args.arch,
            "image_size": self.image_size,
            "job": os.environ.get("TRAINING_JOB_NAME", ""),
        }

    def _foreign(self, state: dict[str, Any]) -> str | None:
        """Why a sound checkpoint is not this job's to continue, or None when it is."""
        job = os.environ.get("TRAINING_JOB_NAME", "")
        if state["job"] != job:
            # A spot restart keeps its job name; another job's checkpoint is not ours to finish.
            return f"belongs to job {state['job']!r}, not {job!r}"
        if state["arch"] != self.args.arch or state["image_size"] != self.image_size:
            return (
                f"holds {state['arch']}@{state['image_size']}px, not "
                f"{self.args.arch}@{self.image_size}px"
            )
        return None

    def _verify_checkpoint(self, state: dict[str, Any]) -> None:
        """DamagedCheckpoint unless `state` is whole: every field, and (when it is ours) tensors
        that fit this model and optimizer, so that loading it cannot fail half-way."""
        checkpointing.require_fields(state, CHECKPOINT_FIELDS)
        checkpointing.require_fields(state["rng"], RNG_FIELDS)
        if self._foreign(state):
            return  # sound but not ours: _resume says so and starts afresh
        expected = self.model.state_dict()
        checkpointing.require_same_tensors("model", state["model"], expected)
        if state["best_state"] is not None:
            checkpointing.require_same_tensors("best_state", state["best_state"], expected)
        checkpointing.require_optimizer_matches(state["optimizer"], self.optimizer)
        if self.scaler.is_enabled() and not state["scaler"]:
            raise checkpointing.DamagedCheckpoint("no GradScaler state for this fp16 run")

    def _resume(self) -> None:
        """Continue from rank 0's checkpoint, which rank 0 reads and sends to every rank."""
        folder = self.checkpoint_dir
        state = (
            checkpointing.load_checkpoint(folder, self._verify_checkpoint)
            if self.ctx.is_main
            else None
        )
        state = distributed.broadcast_object(state, self.ctx)
        if state is None:
            return
        reason = self._foreign(state)
        if reason:
            if self.ctx.is_main:
                print(f"checkpoint: {folder} {reason}; starting afresh")
            return
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        checkpointing.restore_rng_state(state["rng"])
        self.history = state["history"]
        self.best_score = state["best_score"]
        self.best_state = state["best_state"]
        self.bad_epochs = state["bad_epochs"]
        self.stopped_early = state["stopped_early"]
        self.start_epoch = state["epoch"] + 1
        if self.ctx.is_main:
            print(f"checkpoint: resuming after epoch {state['epoch']} from {folder}")

    # --- the loop ---------------------------------------------------------------------------

    def fit(self) -> bool:
        """Train to the end (or early stop); False when --max_epochs_this_run cut it short."""
        args, ctx = self.args, self.ctx
        ran = 0
        epoch = self.start_epoch
        while epoch <= args.epochs and not self.stopped_early:
            if args.max_epochs_this_run and ran >= args.max_epochs_this_run:
                if ctx.is_main:
                    print(f"leaving after {ran} epoch(s) this run (--max_epochs_this_run)")
                return False
            lr = self.optimizer.param_groups[0]["lr"]
            trained = self.train_epoch(epoch)
            bad = nonfinite_names(self.model.state_dict())
            if distributed.any_rank(bool(bad), ctx):
                raise TrainingDiverged(
                    f"training diverged in epoch {epoch}: the weights hold NaN or infinite "
                    f"values ({', '.join(bad[:3]) or 'on another rank'}); "
                    f"nothing was exported: {remedy(args.learning_rate)}"
                )
            record = {"epoch": epoch, **trained, **self.validate(), "lr": lr}
            if not math.isfinite(record["val_loss"]):  # the same sum on every rank
                raise TrainingDiverged(
                    f"training diverged in epoch {epoch}: the validation loss is "
                    f"{record['val_loss']}; nothing was exported: {remedy(args.learning_rate)}"
                )
            self.history.append(record)
            score = (record["val_acc"], -record["val_mae"])
            if self.best_score is None or score > tuple(self.best_score):
                self.best_score = score
                self.best_state = {
                    k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()
                }
                self.bad_epochs = 0
            else:
                self.bad_epochs += 1
            self.stopped_early = distributed.broadcast_flag(
                args.patience > 0 and self.bad_epochs >= args.patience, ctx
            )
            if ctx.is_main:
                print(METRIC_LINE.format(**record), flush=True)
                if self.stopped_early:
                    print(f"early stop: no better validation score for {self.bad_epochs} epochs")
                if self.checkpoint_dir is not None:
                    checkpointing.save_checkpoint(self.checkpoint_dir, self.state(epoch))
            ran += 1
            epoch += 1
        return True

    def export(self) -> None:
        if not self.ctx.is_main:
            return
        state = self.best_state or self.model.state_dict()
        best = max(self.history, key=lambda h: (h["val_acc"], -h["val_mae"]), default=None)
        meta = export_model_dir(
            Path(self.args.model_dir),
            state,
            self.args.arch,
            self.image_size,
            extra={
                "best_epoch": best["epoch"] if best else None,
                "val_acc": best["val_acc"] if best else None,
                # What training started from: `none`, or the ImageNet file and its sha256.
                "pretrained_weights": getattr(self.model, "pretrained_weights", None),
            },
            probe=self.val_data.head(256),  # validation images must get finite answers
        )
        # Into the model archive too: Evaluate publishes them beside its evaluation.
        title = curves_title(meta["version"], execution_of(meta["version"]))
        for folder in (self.args.output_data_dir, self.args.model_dir):
            write_curves(self.history, Path(folder), title, best["epoch"] if best else None)
        print(f"model: {self.args.arch} version {meta['version']} written to {self.args.model_dir}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Before anything loads or joins a process group, from the shards' headers: a split too
    # small to learn from or to choose an epoch by is refused now, not "trained" on.
    try:
        require_images(
            args.train, args.min_train_images, "train", "--min_train_images (MinTrainImages)"
        )
        require_images(
            args.validation,
            args.min_validation_images,
            "validation",
            "--min_validation_images (MinValidationImages)",
        )
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    ctx = distributed.setup()
    if ctx.device.type == "cpu":
        cpu_allocator.keep_freed_memory()
        # The cores this process may use (a container's share); elsewhere than Linux, all.
        cores = (
            len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        ) or 1
        torch.set_num_threads(
            args.num_threads or max(1, cores // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
        )
    else:
        # Fixed input sizes: let cuDNN time its algorithms once and keep the fastest.
        torch.backends.cudnn.benchmark = True
    gpus = int(os.environ.get("SM_NUM_GPUS", "1"))
    if ctx.device.type == "cuda" and gpus > 1 and not ctx.distributed:
        print(
            f"note: {os.environ['SM_NUM_GPUS']} GPUs but no torchrun launch; using one. "
            "Enable distribution={'torch_distributed': {'enabled': True}} to use them all."
        )
    try:
        trainer = Trainer(args, ctx)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if ctx.is_main:
        print(
            f"training {args.arch} on {len(trainer.train_data)} images "
            f"({len(trainer.val_data)} validation) at {trainer.image_size}px on "
            f"{ctx.world_size} x {ctx.device.type}, amp={trainer.amp_dtype}"
        )
    try:
        finished = trainer.fit()
        if finished:
            trainer.export()
    except TrainingDiverged as exc:
        if ctx.is_main:
            print(f"error: {exc}", file=sys.stderr)
        distributed.teardown(ctx)
        return 1
    except NotExportable as exc:
        print(
            f"error: the model was not exported: {exc}; {remedy(args.learning_rate)}",
            file=sys.stderr,
        )
        distributed.teardown(ctx)
        return 1
    distributed.barrier(ctx)
    distributed.teardown(ctx)
    return 0


if __name__ == "__main__":
    sys.exit(main())
