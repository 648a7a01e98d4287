"""The deployer Lambda's code (deployer.py, boto3 only); packaged alone as the Lambda asset."""
