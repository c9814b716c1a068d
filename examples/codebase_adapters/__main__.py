"""``python -m examples.codebase_adapters train|status ...``."""

from examples.codebase_adapters.cli import main

raise SystemExit(main())
