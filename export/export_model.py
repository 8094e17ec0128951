#!/usr/bin/env python3
"""Export a convtwist-zoo model to ONNX: the same tool as ``convtwist-zoo export`` (see export/README.md).

    python export/export_model.py convtwist_resnet50.imagenette -o convtwist_resnet50.onnx --image-size 128
"""
import sys

from convtwist_zoo.cli import main

if __name__ == "__main__":
    sys.exit(main(["export", *sys.argv[1:]]))
