"""MMPrune4U plugin."""
