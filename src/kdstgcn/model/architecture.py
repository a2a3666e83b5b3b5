"""The shape of an STGCN: its blocks in the paper's [c_in, c_t, c_out] notation, the names of its prunable layers
and, once compacted, the original ids of the channels each of them keeps. Torch-free."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

LAYER_KINDS = ("temporal1", "graph", "temporal2")  # the prunable layers of each block, named "block{b}.{kind}"


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

    def original_width(self, layer: str) -> int:
        b, kind = layer.split(".")
        c_in, c_t, c_out = self.blocks[int(b[5:])]
        return c_out if kind == "temporal2" else c_t

    @property
    def widest_layer(self) -> int:
        """Channels of the widest prunable layer (after compaction: of the kept channels)."""
        return max(len(self.channel_ids(f"block{b}.{kind}")) for b in range(len(self.blocks)) for kind in LAYER_KINDS)

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
