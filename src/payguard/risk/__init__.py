"""Risk assessment of payments. For now a pass-through; the risk-engine issue fills it."""
