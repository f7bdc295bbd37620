"""Adapters: the AWS side of the ports (DynamoDB through PynamoDB, SQS, KMS)."""
