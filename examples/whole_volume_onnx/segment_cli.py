"""The same deployment as a command: ``python segment_cli.py -i ct.nii.gz -o seg.nii.gz``.

Each run is a new process: Python starts, onnxruntime loads the ONNX file, one case is
segmented, the label map is written. segbench times all of it (the table says "cold").
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nibabel as nib

sys.path.insert(0, str(Path(__file__).resolve().parent))

from deploy import make_segmenter


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-i", "--input", required=True, help="CT volume (.nii or .nii.gz)")
    parser.add_argument("-o", "--output", required=True, help="label map to write (.nii.gz)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--axes", choices=("xyz", "zyx"), default="xyz")
    args = parser.parse_args(argv)
    segment = make_segmenter(threads=args.threads, axes=args.axes)
    nib.save(segment(nib.load(args.input)), args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
