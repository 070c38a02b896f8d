"""Datasets: split files, the video manifest, HDF5 shards and the torch Dataset."""
