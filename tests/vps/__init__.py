"""The vps target against the rig: its command resources replayed over SSH, checked through nginx."""
