"""ReID backends for the edge: crops in, :class:`~core.embeddings.Embeddings` out, whatever runs
the model. One backend per file behind one base (:mod:`edge.reid.base`):

- :mod:`edge.reid.onnxruntime_backend`: ONNX files, ours or third-party (CPU or CUDA provider);
- :mod:`edge.reid.torch_backend`: training checkpoints (the edge's one declared use of ``trainer``
  and ``export``);
- :mod:`edge.reid.tensorrt_backend`: TensorRT engines built by ``python -m export trt``.

:func:`edge.reid.factory.build_backend` loads the one the camera file's ``reid:`` section
(:mod:`edge.reid.config`) names and refuses a model that does not keep its metadata's contract.
"""
