"""The VSSFlow network: DiT backbone, condition routing, guided velocity and sampling."""

from vssflow_core.model.conditioning import Conditions
from vssflow_core.model.vssflow import VSSFlow

__all__ = ["Conditions", "VSSFlow"]
