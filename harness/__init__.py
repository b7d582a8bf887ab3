"""nkilab.harness: the NKI emulator, checks, performance and energy model, workloads, reports and the `nkilab` CLI."""
