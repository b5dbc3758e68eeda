"""Pure domain layer: states, transitions, backoff, dedupe keys, failure classes.

Standard library only; every function takes the clock or randomness it needs.
"""
