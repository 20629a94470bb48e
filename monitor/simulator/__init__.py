"""A reference slow-LLM origin: four LLM wire formats and a generic one, with every timing and fault on demand."""

from .app import DIALECT_PATHS, create_app
from .params import Params
from .server import RunningSimulator, _enable_receive_stamps, _kernel_receipt, serve
from .timeline import timeline

__all__ = ["DIALECT_PATHS", "Params", "RunningSimulator", "_enable_receive_stamps", "_kernel_receipt", "create_app",
           "serve", "timeline"]
