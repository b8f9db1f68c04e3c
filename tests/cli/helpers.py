"""Shared helpers of the CLI tests."""

from sqft.cli import main


def run_calibrated_stage(stage, model_dir, out, *extra, calib=None) -> int:
    """`sqft STAGE MODEL --output OUT` with a small, quick calibration set (4 windows of 32 tokens)."""
    args = [stage, str(model_dir), "--output", str(out), "--quiet", "--n-samples", "4", "--seq-len", "32"]
    if calib is not None:
        args += ["--calibration", str(calib)]
    return main(args + list(extra))
