"""Entry point of the tune_worker rules: run trials of one study until it holds tuning.trials finished ones."""
import use_checkout  # noqa: F401  (puts src/ on sys.path)
from kdstgcn.runtime.runner import logged
from kdstgcn.tuning.worker import run_worker

p = snakemake.params
with logged(snakemake.log[0], snakemake.threads):
    run_worker(p.run, p.space, p.switches, p.study, p.tuning, dict(snakemake.input), int(snakemake.wildcards.worker),
               snakemake.output[0])
