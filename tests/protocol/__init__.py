"""Tests of memrepl.protocol (a package, so its module names cannot clash with other test dirs)."""
