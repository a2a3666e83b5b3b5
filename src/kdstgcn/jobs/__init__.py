"""What the entry points in scripts/ do, one module per kind of job, as plain functions of paths and run specs."""
