"""Simulation studies: config, design, seeds, runner, executors and the SQLite store."""
