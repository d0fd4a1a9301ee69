"""Test support: a local Hub server and its fixtures, generated outfit datasets, and model testers."""
