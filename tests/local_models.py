"""A model archive made by a test, deployable on the local SageMaker stand-in: stored, then a
model and an endpoint config, both named `name` (the version the server reports)."""

from __future__ import annotations


def deployable_archive(sm, name: str, archive: bytes) -> str:
    uri = f"s3://bincount-local/models/{name}/model.tar.gz"
    sm.store.put_bytes(archive, uri)
    sm.create_model(
        ModelName=name,
        PrimaryContainer={
            "Image": "img",
            "ModelDataUrl": uri,
            "Environment": {"BINCOUNT_MODEL_VERSION": name},
        },
    )
    sm.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[{"VariantName": "AllTraffic", "ModelName": name}],
    )
    return name
