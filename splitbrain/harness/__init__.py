"""The harness: workloads, the store, the simulator and the backends that run a test.

Modules:
  workloads      one object per workload: op generation, Maelstrom encoding/decoding, final ops,
                 checkers (shared by every backend)
  store          the store layout (store/<test-name>/<timestamp>/...) and the history Recorder
  sim/           the deterministic simulator backend (`--backend sim`)
  fault_search   Hypothesis strategies and properties over simulated fault schedules
  runner         `run_test(options)`: the entry point of `splitbrain test` for every backend
"""
