"""`nkilab tune`: search a kernel's declared tunables on the performance model, as sweep tasks (Ray or in-process).

  search.py  candidates (the full grid, or a budgeted random sample), the search, the best config per (target,
             shape class), the tuning table written back beside the kernel (`nkilab.kernels.nki.launch_tuning`)
  cli.py     the `nkilab tune` subcommand (before/after per shape)
"""
