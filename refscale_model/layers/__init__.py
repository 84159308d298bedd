"""Network building blocks (CompressAI-style split: layers here, the assembled model in `model.py`)."""

from refscale_model.layers.encoder import RefEncoder, cosine_similarity_map, expand_similarity, similarity_map
from refscale_model.layers.flow import ActNorm, ConditionalCoupling, FlowBlock, InvertibleConv1x1
from refscale_model.layers.squeeze import HaarSqueeze

__all__ = [
    "ActNorm",
    "ConditionalCoupling",
    "FlowBlock",
    "HaarSqueeze",
    "InvertibleConv1x1",
    "RefEncoder",
    "cosine_similarity_map",
    "expand_similarity",
    "similarity_map",
]
