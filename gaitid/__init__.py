"""gaitid: gait identification from silhouette sequences.

This package is the torch-free core that training and serving share: silhouette
preprocessing, upload decoding, the ONNX input/output contract and the distances. It also
holds the root of the ``gaitid`` command line. Nothing here may import torch.
"""

__version__ = "0.1.0"
