"""textkit: small text utilities (sample project for the codebase_adapters example)."""
