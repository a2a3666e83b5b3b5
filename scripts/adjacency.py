"""Entry point of rule adjacency: distances -> Gaussian-kernel adjacency (Eq. 16) with edge statistics."""
import use_checkout  # noqa: F401  (puts src/ on sys.path)
import pandas as pd

from kdstgcn.data.prepare import read_distances
from kdstgcn.data.graph import check_graph, gaussian_adjacency
from kdstgcn.runtime.io import write_json, write_table
from kdstgcn.runtime.runner import logged

with logged(snakemake.log[0]) as log:
    src, ds = snakemake.params.source, snakemake.params.dataset
    distance = read_distances(snakemake.input[0], src["format"], ds["n_nodes"])
    w = gaussian_adjacency(distance, ds["sigma2"], ds["epsilon"], src["unit_m"])
    stats = check_graph(w, snakemake.input[0])
    log.info("graph: %s", stats)
    write_table(pd.DataFrame(w, columns=[str(i) for i in range(w.shape[0])]), snakemake.output.adjacency)
    write_json(stats, snakemake.output.stats)
