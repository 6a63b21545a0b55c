"""Benchmarks of the DDPM Playground: scripts beside the library that import it (and the app), never imported by it."""
