"""The benchmark harness: systems run side by side, rounds interleaved, medians with spread."""
