"""Export: `folding` turns ConvTwist + BatchNorm into constant convolutions and grids (and Mish into a form without
Softplus), `onnx` writes the static graph and checks it in ONNX Runtime against PyTorch (the ``[export]`` extra)."""
