"""Quantize stage: INT8 variants with ONNX Runtime (ort_int8.py), the calibration method chosen by validation
fidelity (calibration.py), and the accuracy-aware search that keeps sensitive nodes in float (accuracy_aware.py)."""
