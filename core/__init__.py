"""What the trainer, the exporter and the edge runtime all stand on.

``embeddings`` (L2-normalised features and their similarity), ``model_card`` (what an exported
model says about itself: input size, normalisation, similarity statistics), ``onnx_runner`` and
``tensorrt_runner`` (running exported files), ``configio`` (YAML with strict fields and paths
resolved against the file), ``cli`` (one-line errors, console logging, signals), ``extras``
(which optional install a feature needs), ``progress`` (tqdm bars), ``mot`` (the MOT row format).
No torch here: the edge box imports this package.
"""
