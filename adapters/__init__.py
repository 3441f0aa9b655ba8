"""Model adapters (``instract_eval.adapters``): this namespace holds no adapter yet."""
