"""Floats per window and station of the tensors a model makes, and its parameters, from the layers of
kdstgcn.model: what the memory estimate's compute terms are made of."""
from __future__ import annotations

from kdstgcn.runtime.memory.shapes import Layout
from kdstgcn.runtime.sizes import CPU_CONV2D_MIN_CONTRACTION


def block_times(model: Layout) -> list[tuple[int, int]]:
    """Time steps after each block's first and second temporal conv."""
    times, t = [], model.n_his
    for _ in model.blocks:
        times.append((t - (model.kt - 1), t - 2 * (model.kt - 1)))
        t -= 2 * (model.kt - 1)
    return times


def block_tensors(model: Layout, conv2d_taps: bool) -> list[tuple[list[int], list[int]]]:
    """Floats per window and station of the tensors a forward pass makes, per block and then the output layer:
    those the block holds until it is done (each layer's output and the norm's) and the groups each layer frees as
    it goes (a temporal conv's taps and pre-activation; the graph conv's ks stacked terms and two partial sums; the
    norm's input copy). A narrow temporal conv stacks its taps for a batched product on a CPU; a wide one runs
    conv2d, whose scratch of the same size counts where `conv2d_taps`."""
    def taps(c_in: int, positions: int) -> int:
        return c_in * model.kt * positions if conv2d_taps or c_in * model.kt < CPU_CONV2D_MIN_CONTRACTION else 0

    blocks = []
    for (c_in, c_t, c_out), (t1, t2) in zip(model.blocks, block_times(model)):
        held = [c_t * t1, c_t * t1, c_out * t2, c_out * t2]
        freed = [taps(c_in, t1) + 2 * c_t * t1, (model.ks + 2) * c_t * t1, taps(c_t, t2) + c_out * t2, c_out * t2]
        blocks.append((held, freed))
    width = model.blocks[-1][2]
    blocks.append(([width, width, width], [2 * width, width, width]))  # GLU, norm, gate
    return blocks


def training_floats(model: Layout, masked: bool = False) -> int:
    """Floats per window and station of a training step: every tensor of the forward pass (kept for the backward
    pass or freed on the way; under masks each layer's output twice) and twice the largest group again (its
    gradients, in the backward pass)."""
    total, largest = model.n_his, 0
    for held, freed in block_tensors(model, conv2d_taps=False):
        total += sum(held) * (2 if masked else 1) + sum(freed)
        largest = max([largest, *freed])
    return total + 2 * largest


def inference_floats(model: Layout) -> int:
    """Floats per window and station of a forward pass without gradients: every tensor of its largest block (the
    block's input, what it holds, what it frees on the way, conv2d's scratch included)."""
    sizes, block_input = [], model.n_his
    for held, freed in block_tensors(model, conv2d_taps=True):
        sizes.append(block_input + sum(held) + sum(freed))
        block_input = held[-1]
    return max(sizes)


def stream_floats(model: Layout) -> int:
    """Floats per window and station a streaming rollout keeps between its steps (kdstgcn.model.streaming): each
    temporal conv's ring of its last kt input positions, and the output layer's of the blocks' outputs."""
    rings = sum(model.kt * (c_in + c_t) for c_in, c_t, _ in model.blocks)
    return rings + model.blocks[-1][2] * block_times(model)[-1][1]


def chunk_activation_floats(model: Layout) -> int:
    """Floats per window and station of the largest pre-activation, stacked graph terms or output-layer taps of a
    forward pass: at most the largest activation that sizes the CPU rollout's chunks
    (`kdstgcn.model.stgcn.STGCN.largest_activation_floats` also counts the taps of narrow convs), so the chunk
    taken here is at least the rollout's."""
    sizes = []
    for (_, c_t, c_out), (t1, t2) in zip(model.blocks, block_times(model)):
        sizes += [2 * c_t * t1, model.ks * c_t * t1, c_out * t2]
    width, t_last = model.blocks[-1][2], block_times(model)[-1][1]
    return max(sizes + [width * t_last, 2 * width])


def feature_floats(model: Layout, groups: tuple[str, ...] = ("temporal", "spatial", "hidden")) -> int:
    """Floats per window and station of a model's hidden-layer outputs in `groups` (its features): both temporal
    convs of each block, each graph conv, the last block's output."""
    per_group = {"temporal": sum((c_t * t1 + c_out * t2) for (_, c_t, c_out), (t1, t2)
                                 in zip(model.blocks, block_times(model))),
                 "spatial": sum(c_t * t1 for (_, c_t, _), (t1, _) in zip(model.blocks, block_times(model))),
                 "hidden": model.blocks[-1][2] * block_times(model)[-1][1]}
    return sum(per_group[group] for group in groups)


def parameter_count(model: Layout) -> int:
    """Parameters of a model (an upper bound: every residual counted as a 1x1 conv): the convs, the graph convs'
    theta, the layer norms over stations and channels, the output layer's per-station bias."""
    count = 0
    for c_in, c_t, c_out in model.blocks:
        count += model.kt * c_in * 2 * c_t + 2 * c_t + c_in * c_t
        count += model.ks * c_t * c_t + c_t + c_t * c_t
        count += model.kt * c_t * c_out + c_out + c_t * c_out
        count += 2 * model.n_nodes * c_out
    width, t_last = model.blocks[-1][2], block_times(model)[-1][1]
    count += t_last * width * 2 * width + 2 * width + width * width
    count += 2 * model.n_nodes * width + width * width + width + width + model.n_nodes
    return count
