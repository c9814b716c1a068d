"""``python -m examples.corpus_qlora [--work-dir DIR] [--data-only]``."""

from examples.corpus_qlora.pipeline import main

raise SystemExit(main())
