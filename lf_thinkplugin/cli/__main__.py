"""`python -m lf_thinkplugin.cli`: the `lf-think` command without its console script."""

from . import main

raise SystemExit(main())
