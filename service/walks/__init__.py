"""From an uploaded walk to its embedding: the upload forms, bounded reading and decoding,
ONNX Runtime inference and the micro-batcher."""
