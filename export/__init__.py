"""Export: trained checkpoints -> ONNX (uint8 NHWC in, L2-normalised embedding out, metadata) ->
TensorRT engines, every step parity-checked. CLI: ``python -m export {onnx,check,trt,detector}``."""
