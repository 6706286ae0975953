"""memorization."""
