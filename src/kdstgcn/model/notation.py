"""The paper's block notation of an STGCN's channels, "[1,32,64][64,32,128]", read and written without torch."""
from __future__ import annotations


def parse_blocks(text_or_list) -> tuple[tuple[int, int, int], ...]:
    """Accept [[1,32,64],[64,32,128]] or the paper's string "[1,32,64][64,32,128]"."""
    if isinstance(text_or_list, str):
        parts = text_or_list.strip().strip("[]").split("][")
        return tuple(tuple(int(c) for c in p.split(",")) for p in parts)
    return tuple(tuple(int(c) for c in b) for b in text_or_list)


def format_blocks(blocks) -> str:
    """The paper's string "[1,32,64][64,32,128]" of blocks given as lists or tuples of channel counts."""
    return "".join("[" + ",".join(str(c) for c in b) + "]" for b in blocks)
