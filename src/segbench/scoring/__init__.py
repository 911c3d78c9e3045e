"""Torch-free scoring: Dice and logit differences (numpy), and the gates that turn them and the
latencies into verdicts."""
