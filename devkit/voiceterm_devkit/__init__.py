"""Helpers for tests, the demo and the benchmarks: file-backed ALSA devices, a local Pipecat bot."""
