"""Which PyTorch framework image (Deep Learning Container) each part runs, and where it lives.

The account that hosts the images differs by region (opt-in regions, GovCloud, China each have
their own). The SDK's own image config is the source of truth for that, so the definition and
the IAM policies that let the roles pull the images read the same table.
"""

from __future__ import annotations

from dataclasses import dataclass

FRAMEWORK = "pytorch"


@dataclass(frozen=True)
class ImageRepository:
    account: str
    region: str
    name: str

    def arn(self, partition: str) -> str:
        return f"arn:{partition}:ecr:{self.region}:{self.account}:repository/{self.name}"


def image_uri(region: str, version: str, py_version: str, instance_type: str, scope: str) -> str:
    """The framework image for `scope` ("training" or "inference") on `instance_type`."""
    from sagemaker.core import image_uris

    return image_uris.retrieve(
        FRAMEWORK,
        region=region,
        version=version,
        py_version=py_version,
        instance_type=instance_type,
        image_scope=scope,
    )


def repository(region: str, version: str, scope: str) -> ImageRepository:
    """The ECR repository of the framework's `scope` images in `region`.

    Raises ValueError naming the regions the SDK knows when `region` is not one of them.
    """
    from sagemaker.core import image_uris

    config = image_uris.config_for_framework(FRAMEWORK)[scope]["versions"][version]
    registries = config["registries"]
    if region not in registries:
        raise ValueError(
            f"no {FRAMEWORK} {version} {scope} image in region {region!r}; the SDK knows: "
            f"{', '.join(sorted(registries))}"
        )
    return ImageRepository(account=registries[region], region=region, name=config["repository"])
