"""Pure core: state, status view, reconnect policy, playout buffer, PCM helpers. No I/O."""
