"""Hostile clients by the hundred for scripts/abuse.sh, one module per job;
the entry point is scripts/abuse.py."""
