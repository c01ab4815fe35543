"""The rig: a real Debian server with systemd as PID 1, reached over SSH on loopback, for tests."""
