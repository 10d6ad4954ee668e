"""The simulated hardware: the physical model (sim.py), its persisted state (state.py), the control socket
(control.py) and its command-line client (sim_cli.py)."""

from appliance.hardware.sim.sim import SimHardware

__all__ = ["SimHardware"]
