"""The Chebyshev graph convolution: channel mixing theta_k for every term in one product, then the graph
products of `ChebyshevTerms`."""
from __future__ import annotations

import torch
from torch import nn

from kdstgcn.model.graph_products import ChebyshevTerms
from kdstgcn.model.layers import MaskedLayer, make_residual, residual_matrix


class ChebGraphConv(MaskedLayer):
    """Chebyshev graph conv with ks terms, identity residual and ReLU (Yu et al., Eq. 3)."""

    def __init__(self, ks: int, in_ids, out_ids, original_width: int):
        super().__init__(len(out_ids))
        self.theta = nn.Parameter(torch.empty(ks, len(in_ids), len(out_ids)))
        self.bias = nn.Parameter(torch.zeros(len(out_ids)))
        nn.init.xavier_uniform_(self.theta.view(ks * len(in_ids), len(out_ids)))
        self.residual = make_residual(in_ids, out_ids, original_width, original_width)

    def forward(self, x: torch.Tensor, cheb_terms: ChebyshevTerms,
                mixing: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """ReLU(sum_k T_k x theta_k + bias + residual): the channel mixing first (theta_k^T x for all k in one
        batched product on the [B, C, T, N] layout as it is, `folded_mixing`, made here unless given), then the
        graph products over the node axis."""
        b, c, t, n = x.shape
        ks, _, o = self.theta.shape
        matrix, bias = self.folded_mixing() if mixing is None else mixing
        z = torch.baddbmm(bias, matrix.expand(b, -1, -1), x.reshape(b, c, t * n)).view(b, ks, o * t, n)
        return self.apply_mask(torch.relu(cheb_terms(z).view(b, o, t, n)))

    def folded_mixing(self) -> tuple[torch.Tensor, torch.Tensor]:
        """theta_k^T for all k as one matrix [ks x C_out, C_in] and its bias [1, ks x C_out, 1], the bias and
        the residual folded into the k = 0 rows (T_0 is the identity, so they pass the graph product as they
        are): one product gives every term's input."""
        ks, c, o = self.theta.shape
        theta = self.theta.permute(0, 2, 1)  # [ks, o, c]
        first = theta[0] + residual_matrix(self.residual)
        matrix = torch.cat([first[None], theta[1:]]).reshape(ks * o, c)
        return matrix, torch.cat([self.bias, self.bias.new_zeros((ks - 1) * o)]).view(1, ks * o, 1)
