"""A job's peak memory, estimated before it starts from the sizes that set it, and the check that stops a job
before any training when the memory it may use cannot hold it.

`estimate.estimate` adds up what the code allocates, each `Term` from the tensors behind it: what the job holds
throughout (the process's fixed cost, the normalised series, the graph, the models and their training state, the
teacher's stored outputs) and, of its phases, the one that needs most (loading the series; a training step with the
activations kept for its backward pass, the live teacher's features and the distillation losses' distance
matrices; a rollout over a split with its outputs; writing the ONNX files). The sizes per window and station
follow the layers of `kdstgcn.model` (`activations`), the constants of `estimate` were measured
(docs/performance.md, "Memory estimate"). The estimate is of the host's memory: on a GPU the compute terms live in
device memory instead, and the host memory of a CUDA context is not part of it.

- `shapes`: a job as the estimate sees it (`JobShape`), and the estimate's `Term`s and `Estimate`;
- `activations`: a model's tensors per window and station, and its parameters, from its layers;
- `estimate`: the terms of a job and its estimate;
- `check`: the memory a job may use, the check against it, and a rule's `mem_mb`.

Torch-free and below every other layer of the package: the workflow sizes each job's `mem_mb` with it when it
plans. `kdstgcn.jobs.memory` describes a job from its run spec (`JobShape`).
"""
