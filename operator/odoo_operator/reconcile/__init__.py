"""Orchestration: desired state -> apply -> observe -> conditions."""
