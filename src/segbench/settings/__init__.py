"""Torch-free settings: the names a setting may take, benchmarks.json (gates, timing, profiles),
the pipeline settings and the injection a session asks for."""
