"""The verifier committee's pure core: randomness beacon, draw, DBC windows and tally.

No I/O: the service stores rounds and calls these functions; anyone can rerun them on
published data to check the service.
"""
