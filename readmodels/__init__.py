"""Read models: what reports, the API and subscribers derive from the pipeline's outputs.

`processors/` holds the rules the worker's stages run (validation, identity, attribution,
money, aggregates) and the batch computation of those same rules; this package holds what
readers compute from the credits, profiles and aggregate cells those rules produce (the
report, the ledger, retention, the ideal customer profile, spend and return, the MRR bridge,
the serving views' layout). Kept apart so a rule never depends on a way of reading its
results: `readmodels` may import `processors` and `schemas`, never the reverse, and like them
it is pure (no Kafka, Faust, Redis, clock or environment; tests/unit/test_architecture.py).
"""
