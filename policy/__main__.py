"""The Siteline policy pack: `pulumi preview --policy-pack policy` runs it next to any stack."""

from pulumi_policy import EnforcementLevel, PolicyPack
from rules import POLICIES

PolicyPack(name="siteline", policies=POLICIES, enforcement_level=EnforcementLevel.MANDATORY)
