"""What a run leaves behind, from stored records only: the results.jsonl schema (`records`), report.md and the
console summary's rows (`markdown`), and the PNG plots (`plots`)."""
