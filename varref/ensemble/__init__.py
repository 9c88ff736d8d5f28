"""Many refinements on Dask: perturbed-start ensembles and map series, results in zarr."""
