"""The shipped drill scenarios, one module each."""
