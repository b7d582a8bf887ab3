"""The cost of a token (issue 13): an end-to-end decoder-step model, J/token and $/Mtoken per target, and the three
cuts (silicon, quantization, kernels) as a waterfall. A figure is modeled, or measured where per-call records of a
GPU are given (`measured`); see `composer` for the formulas.

  calls.py       the kernel calls of one step on one rank (`Step`: prefill, decode uniform / ragged, mixed)
  estimate.py    one call's modeled time: NKI trace (cached) or the roofline-efficiency model
  efficiency.py  the roofline-efficiency factors (GPU rows, GEMMs without an NKI kernel) and their sources
  deployment.py  ranks (LNC), chips and instance from the HBM capacity rule; TP collectives over the link table
  prices.py      instances and on-demand prices with source and date; overrides
  energy.py      modeled joules per step
  measured.py    measured per-call GPU records -> a measured step (`--measured`), and their recorder
  composer.py    `compose(...)` -> `TokenCost` (latency, tokens/s, J/token, $/Mtoken, breakdown)
  waterfall.py   baseline -> silicon -> fp8 -> int8 -> int4 -> kernels, % change per step
  report.py      tables, report.md section and PNG;  cli.py  `nkilab cost`
"""
