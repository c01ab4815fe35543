"""Siteline: one stack, one environment of the site. The config is validated before anything is declared."""

import pulumi

from components.environment import Environment, EnvironmentArgs
from components.settings import load_settings

settings = load_settings()
environment = Environment(settings.stack, EnvironmentArgs(settings=settings))
for key, value in environment.outputs.items():
    pulumi.export(key, value)
