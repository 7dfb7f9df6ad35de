"""clipreid-edge trainer: two-stage CLIP-ReID training, ReID datasets and evaluation."""
