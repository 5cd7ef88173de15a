"""The identification service (FastAPI + ONNX Runtime + FAISS + SQL). Never imports torch."""
