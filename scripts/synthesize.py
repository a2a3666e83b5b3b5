"""Entry point of rule synthesize: the synthetic PeMS-like network as raw files."""
import use_checkout  # noqa: F401  (puts src/ on sys.path)
from kdstgcn.jobs.data import synthesize
from kdstgcn.runtime.runner import logged

with logged(snakemake.log[0]):
    synthesize(snakemake.params.dataset, snakemake.output.values, snakemake.output.distance)
