"""The hidden maps of a trained model for the t-SNE figure: the input of its output layer, channel-averaged."""
from __future__ import annotations

import numpy as np
import torch

from kdstgcn.config.datasets import DataSpec
from kdstgcn.data.samples import load_data
from kdstgcn.model.persist import load_model


@torch.no_grad()
def hidden_maps(model_path: str, values: str, fill_report: str, data: DataSpec, start: int,
                count: int) -> np.ndarray:
    """Channel-mean hidden representation (input of the output layer) of `count` test windows: [count, T * N]."""
    prepared = load_data(values, fill_report, data)
    model, _ = load_model(model_path)
    model.eval()
    x = prepared.inputs("test")[start:start + count]
    _, features = model(x, return_features=True)
    return features["hidden"].mean(dim=1).flatten(1).numpy()
