"""`nkilab sweep`: the run's modeled pass at any size, as independent tasks on Ray (or in-process).

  tasks.py   the tasks (one per kernel x problem x target x config) and the function one task runs: a modeled
             record, through the shared cache, or an error record (kind, message) when it raises
  stream.py  the run folder's results.jsonl, appended and flushed per record; the keys already done (--resume)
  engine.py  where tasks run: a local or remote Ray cluster (retrying killed workers), or this process
  cli.py     the `nkilab sweep` subcommand (progress bar, the report at the end)
"""
