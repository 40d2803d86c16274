"""Export per format (ONNX, ExecuTorch, Core ML), each artifact checked against PyTorch: ``mcq.export.exporter``."""
