"""Siteline's components: settings, release, app config, the environment and its targets."""
