"""Leaderboard rendering (``instract_eval.leaderboard``): this namespace holds no renderer yet."""
