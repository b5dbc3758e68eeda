"""The soak: a fleet under steady mixed load with faults for a long while, sampled for growth
(``make soak``; ``python -m bench.soak --minutes N``)."""
