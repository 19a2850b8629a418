"""Checks of our trainers against the official repositories (run by hand;
CI keeps only the recorded fingerprints, see README.md)."""
