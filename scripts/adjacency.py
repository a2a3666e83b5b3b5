"""Entry point of rule adjacency: distances -> Gaussian-kernel adjacency (Eq. 16) with edge statistics."""
import use_checkout  # noqa: F401  (puts src/ on sys.path)
from kdstgcn.jobs.data import build_adjacency
from kdstgcn.runtime.runner import logged

with logged(snakemake.log[0]):
    o = snakemake.output
    build_adjacency(snakemake.input[0], snakemake.params.source, snakemake.params.dataset, o.adjacency, o.stats)
