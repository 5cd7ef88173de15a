"""Search and consistency: the FAISS index, the per-gallery indexes kept equal to SQL, and the
change log that keeps other processes' indexes equal to it too."""
