"""The trio shell: link, ALSA, GPIO, keyboard, systemd notify, control socket."""
