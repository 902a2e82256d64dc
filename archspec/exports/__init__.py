"""Exports: ONNX and torch.export programs (`formats`), and standalone PyTorch source written from the IR
(`pycode`, `pywriter`). torch is imported inside the functions that need it."""
