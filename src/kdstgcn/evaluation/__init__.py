"""Evaluation of a trained model: the multi-step rollout and its metrics, and the costs of Table 1."""
