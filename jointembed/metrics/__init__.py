"""Metrics: ranking (recommendation) and cross-modal retrieval, checked against hand-computed cases."""
