"""Deploying a step on AWS: the AWS calls the worker makes and the IAM policy that allows them.

``deploy/aws/`` (at the repository root) holds the CloudFormation templates; this package
holds what ``kombu-worker iam-policy`` prints. It imports nothing from the worker, so any
layer may use it.
"""
