"""`python -m refscale_model.cli …`: the `refscale` command without an installed entry point
(a lent GPU machine runs the checkout with its own Python)."""

from refscale_model.cli import main

raise SystemExit(main())
