"""run.json: what a run folder holds besides its records — the command, wall time, configuration and the sections
computed at run time (the calibration table, the cost section) — so `nkilab report DIR` re-renders the report
without losing them.

Keys (every one optional when reading; a folder from an older nkilab has no run.json):
  command, wall_s, started      the `nkilab run` line, its wall time in s, its UTC start (ISO 8601)
  model, model_shape            model key or config-file name; the ModelShape fields (per-layer dimensions)
  model_config                  the JSON config file of a custom model, or null
  scheme, grid, sizes, phases   qmatmul weight scheme label, grid name, grid overrides, workload phases
  lnc                           {target: logical NeuronCore degree the modeled kernels launched with}
  calibration                   the calibration rows (`nkilab.harness.perf.calibration.calibration_table`) or null
  cost_section                  the report.md text of the cost-of-a-token section (`nkilab.harness.cost`), or null
"""

from __future__ import annotations

import json
import os

RUN_INFO = "run.json"
RESULTS = "results.jsonl"


def write_run_info(out_dir: str, info: dict) -> str:
    """Write out_dir/run.json; returns its path."""
    path = os.path.join(out_dir, RUN_INFO)
    with open(path, "w") as fh:
        json.dump(info, fh, indent=1, default=str)
        fh.write("\n")
    return path


def read_run_info(folder: str) -> dict:
    """The folder's run.json as a dict ({} when the folder has none)."""
    path = os.path.join(folder, RUN_INFO)
    if not os.path.isfile(path):
        return {}
    with open(path) as fh:
        return json.load(fh)


def run_folder_error(folder: str) -> str | None:
    """Why `folder` is not a run folder (missing, not a folder, no results.jsonl), or None when it is one."""
    if not os.path.exists(folder):
        return f"{folder}: no such folder"
    if not os.path.isdir(folder):
        return f"{folder}: not a folder"
    if not os.path.isfile(os.path.join(folder, RESULTS)):
        return f"{folder}: not a run folder (no {RESULTS}; `nkilab run --out {folder}` writes one)"
    return None
