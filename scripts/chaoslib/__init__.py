"""Traffic, broker look-ups and scenarios for scripts/chaos.sh; the entry
point is scripts/chaos.py."""
