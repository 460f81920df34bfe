"""In-house replicated systems as sans-I/O cores (core.py), the state machines they replicate
(machines.py), and the registry of systems by name (registry.py)."""

from .core import Core, Envelope, ProtocolError, Ready
from .machines import MACHINES, StateMachine, make_machine
from .registry import available_systems, get_system, system_names

__all__ = ["Core", "Envelope", "ProtocolError", "Ready", "MACHINES", "StateMachine",
           "make_machine", "available_systems", "get_system", "system_names"]
