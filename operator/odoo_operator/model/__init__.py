"""Typed views of the custom resources: names, labels, conditions."""
