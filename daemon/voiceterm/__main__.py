"""Allow `python -m voiceterm`."""

from voiceterm.cli import main

raise SystemExit(main())
