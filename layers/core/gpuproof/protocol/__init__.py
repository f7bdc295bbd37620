"""The protocol shared by the probe, the committee CLI and the service.

Wire models, canonical encoding, signatures, seeded matrices, Merkle trees and proof checks.
Nothing in this package may import an AWS library: hosts and committee members run it too.
"""
