"""Rate–distortion scoreboard as a benchmark script: the same library and options as `refscale rd`.

    python benchmarks/rate_distortion.py --pairs ../shared/data/webcam_tilde/pairs.csv --split val --limit 8 \\
        --out /tmp/rd
    python benchmarks/rate_distortion.py --bag /tmp/sd/drive_b --cache /tmp/sd/cache \\
        --camera /camera/front/image_raw --every 15 --limit 8 --out /tmp/rd-sd

See docs/rate-distortion.md for the metric, the anchors and the measured curves. Not run by the test suite.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from refscale_model.cli.rd import add_arguments, run  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
