"""The paper's tables, figures and summary from our runs, beside the published numbers."""
