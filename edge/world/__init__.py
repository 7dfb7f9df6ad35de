"""The synthetic multi-camera world: scenes, rendering with exact ground truth, exports."""
