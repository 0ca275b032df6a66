"""``python -m eventodb``: the same as the ``eventodb`` command."""

from eventodb.launcher import main

raise SystemExit(main())
