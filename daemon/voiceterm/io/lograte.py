"""The log-rate helpers moved to `voiceterm.core.lograte` (they are pure, and the link's state machine in core
uses them); this name stays for the modules that still import it from here."""

from voiceterm.core.lograte import RepeatSuppressor, Report, Throttle

__all__ = ["RepeatSuppressor", "Report", "Throttle"]
