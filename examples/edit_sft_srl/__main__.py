"""``python -m examples.edit_sft_srl [--work-dir DIR] [--adapters noop|hf]``."""

from examples.edit_sft_srl.pipeline import main

raise SystemExit(main())
