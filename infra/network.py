"""What VPC mode needs from the VPC, provisioned where the environment asks for it.

In VPC mode the jobs and the model run in the given subnets. Prepare reads the dataset from S3
itself, and SageMaker copies job inputs and outputs and the model artifacts through the
subnets, so they need an S3 gateway endpoint (free) or a NAT. Train, Evaluate and the model run
network-isolated and call nothing else; SageMaker ships their logs and metrics from the host,
not through the subnets. The deployer Lambda calls only control-plane APIs (SageMaker,
Application Auto Scaling) and touches no data, so it runs outside the VPC and needs no
interface endpoints.
"""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_ec2 as ec2
from constructs import Construct

from infra.config import StackConfig


class VpcEndpoints(Construct):
    """An S3 gateway endpoint on the route tables of the jobs' subnets (`route_table_ids`)."""

    def __init__(self, scope: Construct, construct_id: str, *, config: StackConfig) -> None:
        super().__init__(scope, construct_id)
        self.s3 = ec2.CfnVPCEndpoint(
            self,
            "S3Gateway",
            vpc_id=config.vpc_id,
            service_name=f"com.amazonaws.{Stack.of(self).region}.s3",
            vpc_endpoint_type="Gateway",
            route_table_ids=list(config.route_table_ids),
        )
