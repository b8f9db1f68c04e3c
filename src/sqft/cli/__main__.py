"""`python -m sqft.cli ...` (what `torchrun -m` and `accelerate launch -m` need)."""

import sys

from sqft.cli import main

sys.exit(main())
