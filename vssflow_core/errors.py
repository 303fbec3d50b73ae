"""The one exception type the library raises for bad input.

Messages name the offending file or tensor, the expected and the actual value, and the fix, so that
ComfyUI can show them to the user as they are.
"""


class VSSFlowError(ValueError):
    """Bad input (file, tensor, value) described in a message a user can act on."""
