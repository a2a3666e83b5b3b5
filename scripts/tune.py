"""Entry point of the tune rules: the best values of a finished study (yaml) and all its trials (parquet)."""
import use_checkout  # noqa: F401  (puts src/ on sys.path)
from kdstgcn.runtime.runner import logged
from kdstgcn.tuning.results import finish_study

p, o = snakemake.params, snakemake.output
with logged(snakemake.log[0]):
    finish_study(p.study, list(snakemake.input), p.tuning["heartbeat_s"], snakemake.wildcards.dataset, p.name, p.space,
                 p.tuning["epochs"], o.values, o.trials)
