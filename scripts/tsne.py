"""Entry point of rule tsne: hidden representations of a student (red) and a reference model (blue)."""
import use_checkout  # noqa: F401  (puts src/ on sys.path)
from kdstgcn.config.datasets import DataSpec
from kdstgcn.jobs.hidden import hidden_maps
from kdstgcn.report.figures import tsne_figure
from kdstgcn.report.labels import paper_label
from kdstgcn.runtime.runner import logged

with logged(snakemake.log[0]):
    p, w, i = snakemake.params, snakemake.wildcards, snakemake.input
    fig, data = p.figures, DataSpec.from_dict(p.data)
    maps = [hidden_maps(path, i.values, i.fill_report, data, fig["start_window"], fig["tsne_windows"])
            for path in (i.student, i.reference)]
    tsne_figure(maps[0], maps[1], (paper_label(w.student), paper_label(w.reference)),
                f"t-SNE of hidden representations, {w.dataset}",
                snakemake.output[0], seed=p.seed)
