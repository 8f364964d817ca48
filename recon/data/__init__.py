"""Datasets: the HDF5 format (schema), readers (dataset) and converters."""
