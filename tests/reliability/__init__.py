"""Fault injection on the real pipeline stages: kills, a full disk, damaged shards, bad input."""
