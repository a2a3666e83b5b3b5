"""Entry point of rule export: a trained model's ONNX files and model card."""
import use_checkout  # noqa: F401  (puts src/ on sys.path)
from kdstgcn.config.datasets import DataSpec
from kdstgcn.jobs.export import export_run
from kdstgcn.runtime.runner import logged

with logged(snakemake.log[0], snakemake.threads):
    p, i, o = snakemake.params, snakemake.input, snakemake.output
    export_run(i.model, i.metrics, i.values, i.fill_report, DataSpec.from_dict(p.data), p.units, p.description,
               p.fill, p.horizons, p.step_minutes, dict(o.items()))
