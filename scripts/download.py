"""Entry point of rule download: one raw file from the mirror folder or a public URL."""
import use_checkout  # noqa: F401  (puts src/ on sys.path)
from kdstgcn.data.download import fetch, mirror_folder
from kdstgcn.runtime.runner import logged

with logged(snakemake.log[0]):
    spec = snakemake.params.file
    fetch(spec["name"], spec["urls"], spec["sha256"] or None, snakemake.output[0],
          mirror_folder(snakemake.params.mirror))
