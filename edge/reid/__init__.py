"""ReID backends for the edge: crops in, Embeddings out (onnxruntime, torch, tensorrt)."""
