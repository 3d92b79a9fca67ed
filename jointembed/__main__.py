"""``python -m jointembed`` runs the command line, like the ``jointembed`` script."""

from jointembed.cli import main

raise SystemExit(main())
