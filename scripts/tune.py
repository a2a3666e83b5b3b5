"""Entry point of the tune rules: the best values of a finished study (yaml) and all its trials (parquet)."""
import use_checkout  # noqa: F401  (puts src/ on sys.path)
from kdstgcn.runtime.runner import logged
from kdstgcn.tuning import load_study, write_result

p = snakemake.params
with logged(snakemake.log[0]) as log:
    study = load_study(p.study, p.tuning["heartbeat_s"])
    result = write_result(study, snakemake.wildcards.dataset, p.name, p.space,
                          p.tuning["epochs"], snakemake.output.values, snakemake.output.trials)
    log.info("best: trial %d, validation MAE %.4f, %s %s", result["trial"], result["val_mae"],
             result["hyperparameters"], result["switches"])
