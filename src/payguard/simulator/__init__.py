"""Traffic simulator: realistic mobile-money behaviour with labelled fraud, through the SDK."""
