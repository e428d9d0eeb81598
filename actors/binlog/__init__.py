"""MySQL's binary log archived continuously (issue 15, the producer side): the archive's index (index.py).

Imports: `core` and this package's own modules; never another component, the actions or the actors
(checked by `lint-imports`).
"""
