"""STGCN (Yu et al., IJCAI-18) as docs/method.md describes it, with optional channel masks and compaction.

Layout inside the network: [batch, channels, time, nodes]. Every prunable layer has a name
("block0.temporal1", "block0.graph", "block0.temporal2", ...) and a set of surviving channel ids, so a
masked model and its compact (channel-dropped) twin compute the same outputs.
"""
from __future__ import annotations

import torch
from torch import nn

from kdstgcn.model.architecture import LAYER_KINDS, Architecture
from kdstgcn.model.blocks import OutputLayer, STConvBlock
from kdstgcn.model.graph_conv import ChebGraphConv
from kdstgcn.model.graph_products import ChebyshevTerms, stack_for_model
from kdstgcn.model.streaming import PositionRing
from kdstgcn.model.temporal import TemporalConv


class STGCN(nn.Module):
    """Maps a window of `n_his` normalised speeds [B, n_his, N] to the next step [B, N].

    `cheb` is the graph's Chebyshev stack [ks, N, N], dense or sparse (`kdstgcn.data.graph.chebyshev_polynomials`),
    held as `stack_for_model` says: dense up to `DENSE_MAX_NODES` stations, sparse above."""

    def __init__(self, arch: Architecture, cheb: torch.Tensor):
        super().__init__()
        if cheb.shape != (arch.ks, arch.n_nodes, arch.n_nodes):
            raise ValueError(f"Chebyshev stack has shape {tuple(cheb.shape)}, expected "
                             f"({arch.ks}, {arch.n_nodes}, {arch.n_nodes})")
        self.arch = arch
        self.register_buffer("cheb", stack_for_model(cheb))
        self.cheb_terms = ChebyshevTerms(self.cheb)
        in_ids, original_in = (0,), 1
        blocks = []
        for b in range(len(arch.blocks)):
            blocks.append(STConvBlock(arch, b, in_ids, original_in))
            in_ids, original_in = arch.channel_ids(f"block{b}.temporal2"), arch.blocks[b][2]
        self.blocks = nn.ModuleList(blocks)
        self.output = OutputLayer(arch, in_ids, original_in)

    def prunable_layers(self) -> dict[str, TemporalConv | ChebGraphConv]:
        return {f"block{b}.{kind}": getattr(block, kind)
                for b, block in enumerate(self.blocks) for kind in LAYER_KINDS}

    def set_masks(self, masks: dict[str, torch.Tensor] | None) -> None:
        """Switch channels off per prunable layer (None clears every mask)."""
        layers = self.prunable_layers()
        for name, layer in layers.items():
            layer.set_mask(None if masks is None else masks.get(name))
        self.output.set_mask(layers[f"block{len(self.blocks) - 1}.temporal2"].mask)

    def forward(self, x: torch.Tensor, return_features: bool = False):
        return self._pass(x, return_features)

    def _pass(self, x: torch.Tensor, return_features: bool, stream: list | None = None, sliding: bool = False):
        """forward(); with `stream` (an empty list), also fill it with the per-layer state of `start_stream`."""
        h = x.unsqueeze(1)
        features = {"temporal": [], "spatial": []} if return_features else None
        for block in self.blocks:
            if stream is not None:
                stream.append({})
            h = block(h, self.cheb_terms, features, None if stream is None else stream[-1], sliding)
        if stream is not None:
            stream.append({"blocks": PositionRing(h, self.output.temporal, sliding)})
        y = self.output(h)
        if features is None:
            return y
        features["hidden"] = h
        return y, features

    def largest_activation_floats(self) -> int:
        """Floats of the largest tensor one window makes in a forward pass on a CPU (a temporal conv's stacked
        taps or output, the graph conv's ks stacked terms): what sizes the rollout's chunks there."""
        t, sizes = self.arch.n_his, []
        for block in self.blocks:
            for conv, stacked in ((block.temporal1, block.graph), (block.temporal2, None)):
                if conv.runs_as_matmul(t, "cpu"):
                    sizes.append(conv.conv.in_channels * conv.kt * (t - conv.kt + 1))
                t -= conv.kt - 1
                sizes.append(conv.conv.out_channels * t)
                if stacked is not None:
                    sizes.append(stacked.theta.shape[0] * stacked.width * t)
        head = self.output.temporal.conv
        sizes += [head.in_channels * head.kernel_size[0], head.out_channels]
        return max(sizes) * self.arch.n_nodes

    def start_stream(self, x: torch.Tensor, return_features: bool = False, differentiable: bool = False
                     ) -> tuple[torch.Tensor | tuple[torch.Tensor, dict], list[dict]]:
        """forward(x, return_features) of windows [B, n_his, N], plus the per-layer state `stream_step`
        continues from: the last kt-1 inputs of each temporal conv and the last n_his - 4(kt-1) - 1 block
        outputs before the output layer. Without `differentiable` the state is written in place (inference);
        with it, autograd differentiates through the stream's steps (training). Either way `stream_step` equals
        forward() only where forward() draws nothing at random: in eval mode, or without dropout."""
        state: list[dict] = []
        return self._pass(x, return_features, state, differentiable), state

    def stream_step(self, newest: torch.Tensor, state: list[dict]) -> torch.Tensor:
        """The prediction [B, N] for the window moved on by one step, whose newest input is `newest` [B, N]:
        equal to forward() of the moved window, at the cost of one time position per layer (temporal convs
        are valid and the layer norm is per time step, so the older positions are unchanged)."""
        h = newest[:, None, None, :]
        for block, stream in zip(self.blocks, state):
            h = block.step(h, self.cheb_terms, stream)
        state[-1]["blocks"].push(h)
        return self.output.step(state[-1]["blocks"])
