"""Verdicts on chain: SCALE payloads and batch Merkle trees, the substrate adapter, the outbox
publisher and the consumer's decoder/verifier (the reference for the pallet). See docs/chain.md.
"""
