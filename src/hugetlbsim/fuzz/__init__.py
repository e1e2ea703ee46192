"""Differential fuzzing: random valid scenarios, run on two sides, divergences shrunk.

`generate` makes a scenario from a seed, `campaign` runs many of them (model policy against
policy, or model against the live kernel) on a `concurrent.futures.Executor`, and `shrink`
reduces each divergence to a minimal scenario saved with the reference side's counters.
"""
