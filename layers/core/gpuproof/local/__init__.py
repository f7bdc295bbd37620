"""The local embedded stack: template.yaml's resources on moto, its handlers behind a local front.

Only this package knows it is local; the domain package and the handlers run unchanged.
"""

from gpuproof.local.stack import LocalStack

__all__ = ["LocalStack"]
