"""socialguard: enforce a school district's social networking policy on the wire, and prove it."""

__version__ = "0.1.0"
__all__ = ["__version__"]
