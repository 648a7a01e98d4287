"""The one stack: storage, roles, registry, one deployer per stage, promoters between stages,
the pipeline, notifications, a dashboard and the personas' policies, wired together."""

from __future__ import annotations

from aws_cdk import CfnOutput, Stack, Tags
from constructs import Construct

from infra.config import StackConfig
from infra.dashboard import Dashboard
from infra.deployer import Deployer
from infra.monitoring import StageMonitoring
from infra.network import VpcEndpoints
from infra.notifications import Notifications
from infra.personas import Personas
from infra.pipeline import Pipeline
from infra.promotion import Promoter
from infra.registry import Registry
from infra.retraining import Retraining
from infra.roles import Roles
from infra.storage import Storage


class BincountStack(Stack):
    """Everything bincount needs in one account and region."""

    def __init__(self, scope: Construct, construct_id: str, *, config: StackConfig, **kwargs):
        super().__init__(scope, construct_id, **kwargs)
        self.config = config
        for name, value in config.all_tags.items():
            Tags.of(self).add(name, value)
        self.storage = Storage(self, "Storage", config)
        if config.route_table_ids:
            VpcEndpoints(self, "VpcEndpoints", config=config)
        bucket, key = self.storage.bucket, self.storage.key
        self.notifications = Notifications(self, "Notifications", config=config, key=key)
        topic = self.notifications.topic
        self.roles = Roles(self, "Roles", config=config, bucket=bucket, key=key)
        self.registry = Registry(self, "Registry", config=config, key=key)

        stages = config.stages
        self.deployers: list[Deployer] = []
        self.promoters: list[Promoter] = []
        self.monitors: list[StageMonitoring] = []
        for index, stage in enumerate(stages):
            next_stage = stages[index + 1] if index + 1 < len(stages) else None
            monitor = None
            if stage.monitored:
                monitor = StageMonitoring(
                    self,
                    f"Monitoring{_id(stage.name)}",
                    config=config,
                    stage=stage,
                    bucket=bucket,
                    key=key,
                    topic=topic,
                )
                self.monitors.append(monitor)
            deployer = Deployer(
                self,
                # The first stage keeps the plain id (its logical ids stay as they were).
                "Deployer" if index == 0 else f"Deployer{_id(stage.name)}",
                config=config,
                stage=stage,
                next_stage=next_stage,
                bucket=bucket,
                key=key,
                model_role=self.roles.model_role,
                group_name=config.group_name(stage),
                topic=topic,
                monitor=monitor,
            )
            if monitor is not None:
                # The schedule names this role: it stays until the teardown has deleted it.
                deployer.teardown.node.add_dependency(monitor.role)
            # The teardown runs before the group goes (a `destroy` group deletes its versions).
            deployer.teardown.node.add_dependency(self.registry.groups[config.group_name(stage)])
            self.deployers.append(deployer)
            if next_stage is not None:
                self.promoters.append(
                    Promoter(
                        self,
                        f"Promote{_id(stage.name)}To{_id(next_stage.name)}",
                        config=config,
                        source=stage,
                        target=next_stage,
                        key=key,
                        topic=topic,
                    )
                )
        self.deployer = first = self.deployers[0]
        self.roles.grant_invoke(first.function.function_arn)
        self.pipeline = Pipeline(
            self,
            "Pipeline",
            config=config,
            bucket=bucket,
            key=key,
            pipeline_role=self.roles.pipeline_role,
            job_role=self.roles.job_role,
            deployer_function_arn=first.function.function_arn,
        )
        self.pipeline.pipeline.node.add_dependency(self.registry.group)
        # Deleted before the deployers' teardowns: no execution deploys during `cdk destroy`.
        for deployer in self.deployers:
            self.pipeline.pipeline.node.add_dependency(deployer.teardown)

        pipeline_name = self.pipeline.settings.pipeline_name
        for monitor in self.monitors:
            # The monitoring job runs the processing archive the pipeline's Evaluate runs.
            monitor.use_pipeline_code(self.pipeline.definition_body)
        self.retraining = None
        if config.retraining:
            self.retraining = Retraining(
                self,
                "Retraining",
                config=config,
                key=key,
                topic=topic,
                pipeline_name=pipeline_name,
                definition_body=self.pipeline.definition_body,
                drift_alarms=[m.drift_alarm for m in self.monitors],
            )
            # Gone before the pipeline on `cdk destroy`: nothing starts an execution then.
            self.retraining.node.add_dependency(self.pipeline.pipeline)
        self.notifications.pipeline_failures(pipeline_name)
        self.notifications.approvals_waiting([config.group_name(s) for s in stages])
        Dashboard(self, "Dashboard", config=config, pipeline_name=pipeline_name)
        self.personas = Personas(
            self,
            "Personas",
            config=config,
            bucket=bucket,
            key=key,
            pipeline_name=pipeline_name,
            promoter_arns=[p.function.function_arn for p in self.promoters],
        )

        outputs = {
            "BucketName": bucket.bucket_name,
            "KmsKeyArn": key.key_arn,
            "PipelineRoleArn": self.roles.pipeline_role.role_arn,
            "JobRoleArn": self.roles.job_role.role_arn,
            "ModelRoleArn": self.roles.model_role.role_arn,
            "PipelineName": pipeline_name,
            "ModelPackageGroupName": self.registry.group_name,
            "EndpointName": config.endpoint_name,
            "DeployerFunctionName": first.function.function_name,
            "DeployerFunctionArn": first.function.function_arn,
            "NotificationTopicArn": topic.topic_arn,
            "ReadOnlyPolicyArn": self.personas.read_only.managed_policy_arn,
            "DataScientistPolicyArn": self.personas.data_scientist.managed_policy_arn,
        }
        if self.personas.release_approver is not None:
            outputs["ReleaseApproverPolicyArn"] = self.personas.release_approver.managed_policy_arn
        for stage, deployer, promoter in zip(
            stages[1:], self.deployers[1:], self.promoters, strict=True
        ):
            outputs[f"{_id(stage.name)}EndpointName"] = stage.endpoint_name
            outputs[f"{_id(stage.name)}ModelPackageGroupName"] = config.group_name(stage)
            outputs[f"PromoteTo{_id(stage.name)}FunctionName"] = promoter.function.function_name
            outputs[f"{_id(stage.name)}DeployerFunctionName"] = deployer.function.function_name
        for name, value in outputs.items():
            CfnOutput(self, name, value=value)


def _id(name: str) -> str:
    """`pre-prod` -> `PreProd`, for construct ids and output names."""
    return "".join(part.title() for part in name.split("-"))
