"""The phased rollout: shadow and canary states, shared state, fallback and metrics."""
