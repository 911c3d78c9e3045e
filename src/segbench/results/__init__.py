"""Torch-free results: the case record in extra_info, saved runs, shard merge, gate decision,
comparison, the table, Markdown reports, plots and baselines."""
