"""The simulated county: department systems generated from the contracts, reproducible from a
seed and growing day by day (see :func:`simulate`)."""

from etl.simulate.core import SimulationSummary, dirt_counts, read_state, simulate, state_path

__all__ = ["SimulationSummary", "dirt_counts", "read_state", "simulate", "state_path"]
