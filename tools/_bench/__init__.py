"""tools/benchmark.py's pieces: plan (what is measured), cells (keys, cache, progress), configs and execute / measure
(running cells with the project's CLI pieces), stats, report / markdown / plots (analysis, from the json alone)."""
