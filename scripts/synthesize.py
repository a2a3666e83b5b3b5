"""Entry point of rule synthesize: the synthetic PeMS-like network as raw files."""
import use_checkout  # noqa: F401  (puts src/ on sys.path)
import numpy as np
from kdstgcn.runtime.io import atomic_path
from kdstgcn.runtime.runner import logged
from kdstgcn.data.synthetic import generate

with logged(snakemake.log[0]) as log:
    ds = snakemake.params.dataset
    syn = ds["synthetic"]
    values, distance = generate(n_nodes=ds["n_nodes"], n_days=syn["days"], steps_per_day=ds["steps_per_day"],
                                seed=syn["seed"], area_km=syn.get("area_km", 8.0),
                                missing_pct=syn.get("missing_pct", 2.0))
    with atomic_path(snakemake.output.values) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, data=values)
    with atomic_path(snakemake.output.distance) as tmp:
        np.savetxt(tmp, distance, delimiter=",", fmt="%.1f")
    log.info("synthetic network: %d nodes, %d days, %.2f%% missing", ds["n_nodes"], syn["days"],
             100 * (values == 0).mean())
