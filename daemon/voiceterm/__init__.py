"""voiceterm: a push-to-talk voice terminal daemon for a Pipecat bot."""

__version__ = "0.1.0"
