"""argusflow: Argus network flow auditing in Python, interoperable with Argus 3.0.8."""

__version__ = "0.1.0"
