"""STGCN (Yu et al., IJCAI-18) as specified in METHOD.md, with optional channel masks and compaction.

Layout inside the network: [batch, channels, time, nodes]. Every prunable layer has a name
("block0.temporal1", "block0.graph", "block0.temporal2", ...) and a set of surviving channel ids, so a
masked model and its compact (channel-dropped) twin compute the same outputs.
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import nn

LAYER_KINDS = ("temporal1", "graph", "temporal2")
LN_EPS = 1e-6


@dataclass(frozen=True)
class Architecture:
    """Shape of an STGCN: the paper's block notation [c_in, c_t, c_out], plus surviving channel ids once compacted."""

    n_nodes: int
    blocks: tuple[tuple[int, int, int], ...]
    kt: int = 3
    ks: int = 3
    n_his: int = 12
    dropout: float = 0.0
    kept: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def __post_init__(self):
        blocks = tuple(tuple(int(c) for c in b) for b in self.blocks)
        object.__setattr__(self, "blocks", blocks)
        object.__setattr__(self, "kept", {k: tuple(v) for k, v in self.kept.items()})
        if blocks[0][0] != 1:
            raise ValueError(f"the first block must take 1 input channel, got {blocks[0]}")
        for prev, nxt in zip(blocks, blocks[1:]):
            if prev[2] != nxt[0]:
                raise ValueError(f"block {nxt} must take the {prev[2]} channels that block {prev} gives")
        if self.time_after_blocks < 1:
            raise ValueError(f"n_his={self.n_his} is too short for {len(blocks)} blocks with kt={self.kt}")

    @property
    def time_after_blocks(self) -> int:
        return self.n_his - 2 * len(self.blocks) * (self.kt - 1)

    def layer_names(self) -> list[str]:
        return [f"block{b}.{kind}" for b in range(len(self.blocks)) for kind in LAYER_KINDS]

    def original_width(self, layer: str) -> int:
        b, kind = layer.split(".")
        c_in, c_t, c_out = self.blocks[int(b[5:])]
        return c_out if kind == "temporal2" else c_t

    def channel_ids(self, layer: str) -> tuple[int, ...]:
        """Original ids of the channels that `layer` outputs."""
        return self.kept.get(layer, tuple(range(self.original_width(layer))))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["blocks"] = [list(b) for b in self.blocks]
        d["kept"] = {k: list(v) for k, v in self.kept.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Architecture":
        return cls(**{**d, "blocks": tuple(tuple(b) for b in d["blocks"]), "kept": d.get("kept", {})})

    def with_kept(self, kept: dict[str, tuple[int, ...]]) -> "Architecture":
        return replace(self, kept=kept)


class ChannelAlign(nn.Module):
    """Parameter-free residual: carries input channel id k to output channel id k (STGCN's identity or zero-pad)."""

    def __init__(self, in_ids: tuple[int, ...], out_ids: tuple[int, ...]):
        super().__init__()
        self.identity = tuple(in_ids) == tuple(out_ids)
        position = {cid: p for p, cid in enumerate(in_ids)}
        pairs = [(position[cid], j) for j, cid in enumerate(out_ids) if cid in position]
        self.n_out = len(out_ids)
        self.register_buffer("src", torch.tensor([p for p, _ in pairs], dtype=torch.long), persistent=False)
        self.register_buffer("dst", torch.tensor([j for _, j in pairs], dtype=torch.long), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.identity:
            return x
        out = x.new_zeros(x.shape[0], self.n_out, *x.shape[2:])
        out[:, self.dst] = x[:, self.src]
        return out


def make_residual(in_ids, out_ids, original_in: int, original_out: int) -> nn.Module:
    """STGCN's residual: a bias-free 1x1 conv when the layer narrows the channels, else identity/zero-pad."""
    if original_in > original_out:
        return nn.Conv2d(len(in_ids), len(out_ids), (1, 1), bias=False)
    return ChannelAlign(in_ids, out_ids)


class MaskedLayer(nn.Module):
    """A layer whose output channels can be switched off by a 0/1 mask (None = all kept, no cost).

    The mask is a buffer outside the state dict: it lives on the layer's device, whatever device it is given on,
    and `.to()` moves it with the weights."""

    def __init__(self, width: int):
        super().__init__()
        self.width = width
        self.register_buffer("mask", None, persistent=False)

    def set_mask(self, mask: torch.Tensor | None) -> None:
        device = next(self.parameters()).device
        self.mask = None if mask is None else mask.to(device).float().reshape(1, -1, 1, 1)

    def apply_mask(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.mask is None else x * self.mask.to(x.device)


class TemporalConv(MaskedLayer):
    """Temporal gated/plain conv of kernel (kt, 1) with STGCN's residual; act in {glu, relu, sigmoid}."""

    def __init__(self, kt: int, in_ids, out_ids, original_in: int, original_out: int, act: str):
        super().__init__(len(out_ids))
        self.kt, self.act = kt, act
        c_in, c_out = len(in_ids), len(out_ids)
        self.conv = nn.Conv2d(c_in, 2 * c_out if act == "glu" else c_out, (kt, 1))
        self.residual = None if act == "sigmoid" else make_residual(in_ids, out_ids, original_in, original_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        if self.act == "sigmoid":
            return self.apply_mask(torch.sigmoid(h))
        res = self.residual(x)[:, :, self.kt - 1:, :]
        if self.act == "glu":
            out = (h[:, : self.width] + res) * torch.sigmoid(h[:, self.width:])
        else:
            out = torch.relu(h + res)
        return self.apply_mask(out)


class ChebGraphConv(MaskedLayer):
    """Chebyshev graph conv with ks terms, identity residual and ReLU (Yu et al., Eq. 3)."""

    def __init__(self, ks: int, in_ids, out_ids, original_width: int):
        super().__init__(len(out_ids))
        self.theta = nn.Parameter(torch.empty(ks, len(in_ids), len(out_ids)))
        self.bias = nn.Parameter(torch.zeros(len(out_ids)))
        nn.init.xavier_uniform_(self.theta.view(ks * len(in_ids), len(out_ids)))
        self.residual = make_residual(in_ids, out_ids, original_width, original_width)

    def forward(self, x: torch.Tensor, cheb: torch.Tensor) -> torch.Tensor:
        xk = torch.einsum("kmn,bctn->bkctm", cheb, x)
        h = torch.einsum("bkctm,kco->botm", xk, self.theta) + self.bias.view(1, -1, 1, 1)
        return self.apply_mask(torch.relu(h + self.residual(x)))


class NodeChannelNorm(nn.Module):
    """LayerNorm over [nodes, channels] per sample and time step; statistics over unmasked channels only."""

    def __init__(self, n_nodes: int, width: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n_nodes, width))
        self.bias = nn.Parameter(torch.zeros(n_nodes, width))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        h = x.permute(0, 2, 3, 1)  # [B, T, N, C]
        if mask is None:
            out = F.layer_norm(h, h.shape[-2:], self.weight, self.bias, LN_EPS)
        else:
            m = mask.reshape(1, 1, 1, -1).to(h.device)
            count = m.sum() * h.shape[2]
            mean = (h * m).sum(dim=(2, 3), keepdim=True) / count
            var = (((h - mean) * m) ** 2).sum(dim=(2, 3), keepdim=True) / count
            out = ((h - mean) / torch.sqrt(var + LN_EPS) * self.weight + self.bias) * m
        return out.permute(0, 3, 1, 2)


class STConvBlock(nn.Module):
    """Temporal GLU conv -> Chebyshev graph conv -> temporal ReLU conv -> LayerNorm -> dropout."""

    def __init__(self, arch: Architecture, index: int, in_ids: tuple[int, ...], original_in: int):
        super().__init__()
        _, c_t, c_out = arch.blocks[index]
        name = f"block{index}"
        t1_ids = arch.channel_ids(f"{name}.temporal1")
        g_ids = arch.channel_ids(f"{name}.graph")
        t2_ids = arch.channel_ids(f"{name}.temporal2")
        self.temporal1 = TemporalConv(arch.kt, in_ids, t1_ids, original_in, c_t, "glu")
        self.graph = ChebGraphConv(arch.ks, t1_ids, g_ids, c_t)
        self.temporal2 = TemporalConv(arch.kt, g_ids, t2_ids, c_t, c_out, "relu")
        self.norm = NodeChannelNorm(arch.n_nodes, len(t2_ids))
        self.dropout = nn.Dropout(arch.dropout)

    def forward(self, x, cheb, features: dict | None):
        t1 = self.temporal1(x)
        g = self.graph(t1, cheb)
        t2 = self.temporal2(g)
        if features is not None:
            features["temporal"] += [t1, t2]
            features["spatial"].append(g)
        return self.dropout(self.norm(t2, self.temporal2.mask))


class OutputLayer(nn.Module):
    """STGCN output: temporal GLU conv over the remaining steps, LayerNorm, 1x1 sigmoid conv, per-node linear."""

    def __init__(self, arch: Architecture, in_ids: tuple[int, ...], original_width: int):
        super().__init__()
        self.temporal = TemporalConv(arch.time_after_blocks, in_ids, in_ids, original_width, original_width, "glu")
        self.norm = NodeChannelNorm(arch.n_nodes, len(in_ids))
        self.gate = TemporalConv(1, in_ids, in_ids, original_width, original_width, "sigmoid")
        self.fc_weight = nn.Parameter(torch.empty(len(in_ids)))
        self.fc_bias = nn.Parameter(torch.zeros(arch.n_nodes))
        nn.init.uniform_(self.fc_weight, -len(in_ids) ** -0.5, len(in_ids) ** -0.5)

    def set_mask(self, mask: torch.Tensor | None) -> None:
        self.temporal.set_mask(mask)
        self.gate.set_mask(mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(self.temporal(x), self.temporal.mask)
        h = self.gate(h)  # [B, C, 1, N]
        return torch.einsum("bctn,c->bn", h, self.fc_weight) + self.fc_bias


class STGCN(nn.Module):
    """Maps a window of `n_his` normalised speeds [B, n_his, N] to the next step [B, N]."""

    def __init__(self, arch: Architecture, cheb: torch.Tensor):
        super().__init__()
        if cheb.shape != (arch.ks, arch.n_nodes, arch.n_nodes):
            raise ValueError(f"Chebyshev stack has shape {tuple(cheb.shape)}, expected "
                             f"({arch.ks}, {arch.n_nodes}, {arch.n_nodes})")
        self.arch = arch
        self.register_buffer("cheb", cheb.float())
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
        h = x.unsqueeze(1)
        features = {"temporal": [], "spatial": []} if return_features else None
        for block in self.blocks:
            h = block(h, self.cheb, features)
        y = self.output(h)
        if features is None:
            return y
        features["hidden"] = h
        return y, features


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def weights_digest(model: nn.Module) -> str:
    """Short content hash of a model's weights and buffers: which teacher or base a run depends on."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def parse_blocks(text_or_list) -> tuple[tuple[int, int, int], ...]:
    """Accept [[1,32,64],[64,32,128]] or the paper's string "[1,32,64][64,32,128]"."""
    if isinstance(text_or_list, str):
        parts = text_or_list.strip().strip("[]").split("][")
        return tuple(tuple(int(c) for c in p.split(",")) for p in parts)
    return tuple(tuple(int(c) for c in b) for b in text_or_list)


def format_blocks(blocks) -> str:
    return "".join("[" + ",".join(str(c) for c in b) + "]" for b in blocks)


def save_model(model: STGCN, path, extra: dict | None = None) -> None:
    """Save a model whole: architecture, graph and weights (masks included), loadable without other files."""
    from .io import save_torch

    masks = {name: layer.mask.flatten().bool().cpu() for name, layer in model.prunable_layers().items()
             if layer.mask is not None}
    save_torch({"arch": model.arch.to_dict(), "cheb": model.cheb, "state_dict": model.state_dict(),
                "masks": masks, "extra": extra or {}}, path)


def load_model(path, map_location="cpu") -> tuple[STGCN, dict]:
    blob = torch.load(path, map_location=map_location, weights_only=False)
    model = STGCN(Architecture.from_dict(blob["arch"]), blob["cheb"])
    model.load_state_dict(blob["state_dict"])
    if blob.get("masks"):
        model.set_masks(blob["masks"])
    return model, blob.get("extra", {})
