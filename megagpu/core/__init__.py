"""Pure domain: model, features, Q-policy, baselines, scoring, Q-state (no I/O)."""
