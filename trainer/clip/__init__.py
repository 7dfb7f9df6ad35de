"""The CLIP parts a ReID model is built from: the CLIP network itself (``factory``: open_clip
architectures, bundled tiny configs, pretrained weights), its image encoders adapted to person
crops (``image_encoders``: ViT and ResNet, SIE, resampled position grids) and its text side
(``text``: the token-embedding text encoder, learnable prompts).

They depend on torch and open_clip only. The occlusion-robust methods (:mod:`trainer.methods`)
build on them, and the model that ties encoders, prompts and a method together
(:mod:`trainer.models`) stands on both.
"""
