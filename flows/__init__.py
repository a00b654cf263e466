"""Prefect flows and deployments. Thin: every task calls plain fer_core functions."""
