"""``python -m examples.domain_qlora [--work-dir DIR] [--data-only] [--max-steps N]
[--model-path DIR]``."""

from examples.domain_qlora.pipeline import main

raise SystemExit(main())
