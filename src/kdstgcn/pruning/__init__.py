"""Filter pruning of an STGCN and compaction of the pruned model."""
