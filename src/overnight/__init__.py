"""overnight: an autonomous research harness. Propose, train, measure, keep what is really better."""

__version__ = "0.1.0"
