"""Side effects on external systems: idempotent ensure / observe / drop, one module each."""
