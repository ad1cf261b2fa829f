"""Inference: the Engine protocol, its ONNX Runtime implementation and output parsers."""
