"""One contract-test mixin per port: ``training``, ``sampling``, ``dataset``, ``blob``,
``hub``, ``metrics`` and ``tokenizer``. :mod:`kitchen.testing` re-exports the mixins."""
