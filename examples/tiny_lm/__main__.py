"""``python -m examples.tiny_lm [--preset quick|quality|low-memory] [--output-dir DIR] ...``."""

from examples.tiny_lm.cli import main

raise SystemExit(main())
