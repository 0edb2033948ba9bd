"""ARLArena baselines: the SAMPO trainer (see baselines/README.md)."""
