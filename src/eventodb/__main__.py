"""``python -m eventodb``: the same as the ``eventodb`` command."""

from eventodb.cli import main

raise SystemExit(main())
