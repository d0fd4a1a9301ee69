"""Shared utilities: atomic writes of files and folders, and the one Hub upload of a folder."""
