"""Click commands, one module per area; ``tlsweep.cli`` assembles them. Heavy imports stay inside functions."""
