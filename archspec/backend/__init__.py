"""The torch backend: the IR built as `torch.nn.Module` (`compiler`, `nn`, `init`), weights from torchvision and
timm (`interop`, `dataflow`, `references`) and test-time augmentation (`tta`). Imported only by what builds or
runs a module."""
