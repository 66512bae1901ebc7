"""Pure functions: spec -> desired objects, SQL plans, ACL rules; no I/O."""
