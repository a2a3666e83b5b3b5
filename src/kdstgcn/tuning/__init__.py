"""Tuning with Optuna on the validation MAE: a student's hyper-parameters per loss, a pruning run's per pruned model."""
