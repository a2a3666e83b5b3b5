"""The STGCN: its architecture, layers, graph products, streaming and saved form."""
