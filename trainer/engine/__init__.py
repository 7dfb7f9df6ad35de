"""Training engine: the two CLIP-ReID stages, optimisation, resume, distributed runs."""
