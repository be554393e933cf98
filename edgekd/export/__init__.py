"""Export stage: the student to ONNX with parity against PyTorch (onnx.py), and for ONNX Runtime the fastest
equivalent graph, chosen by measurement (graph_choice.py)."""
