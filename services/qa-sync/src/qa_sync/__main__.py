"""`python -m qa_sync`: see qa_sync.cli."""

from qa_sync.cli import main

raise SystemExit(main())
