"""The paper reproduced: the experiment registry, its tables and figures, and `run_all`."""
