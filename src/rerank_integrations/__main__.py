"""``python -m rerank_integrations``: see :mod:`rerank_integrations.cli`."""

from rerank_integrations.cli import main

raise SystemExit(main())
