"""Verify worker: SQS batch of stored reports -> gpuproof.workers.verify, partial failures reported."""

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from gpuproof.workers.verify import handle

logger = Logger()
metrics = Metrics()
tracer = Tracer()


# A batch has no single correlation id; the record handler logs each report's ids.
@logger.inject_lambda_context
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle(event, context)
