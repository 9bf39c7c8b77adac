"""The effective CompliancePolicy: the cluster's fields over the built-in defaults."""

from __future__ import annotations

from dataclasses import dataclass, field

from computegate.models.resources import (
    Action,
    BandwidthControl,
    CompliancePolicySpec,
    DeviceAccessAction,
    Enforcement,
    PolicyRule,
    UnknownAcceleratorAction,
    UnknownTenantAction,
)

_STRICTNESS = {Action.ALLOW: 0, Action.REQUIRE_LICENSE: 1, Action.PROHIBIT: 2}


def stricter(first: Action, second: Action) -> Action:
    return first if _STRICTNESS[first] >= _STRICTNESS[second] else second


@dataclass(frozen=True)
class RuleMatch:
    action: Action
    rule_index: int | None  # None: no rule matched, so the country is allowed
    via: str | None  # the group (or "jurisdictions") through which the rule matched
    # Set when a bandwidth control covering the workload names the country and raised the rules'
    # Allow to RequireLicense (DESIGN.md step 7): the control's name.
    raised_by: str | None = None


@dataclass(frozen=True)
class EffectivePolicy:
    spec: CompliancePolicySpec
    country_groups: dict[str, frozenset[str]]
    rules: tuple[PolicyRule, ...]
    exempt_namespaces: frozenset[str]
    from_cluster: bool
    bandwidth_controls: tuple[BandwidthControl, ...] = ()
    _controlled_bands: frozenset[str] = field(init=False, repr=False)  # read once per accelerator
    _matches: dict[str, RuleMatch] = field(init=False, repr=False, compare=False, default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_controlled_bands", frozenset(self.spec.controlled_bands))

    @classmethod
    def build(
        cls,
        spec: CompliancePolicySpec | None,
        builtin_groups: dict[str, frozenset[str]],
        builtin_rules: tuple[PolicyRule, ...],
        builtin_controls: tuple[BandwidthControl, ...] = (),
    ) -> EffectivePolicy:
        from_cluster = spec is not None
        spec = spec or CompliancePolicySpec()
        groups = dict(builtin_groups)
        # A group named in the policy replaces the built-in group of that name; others remain.
        groups.update({name: frozenset(codes) for name, codes in spec.country_groups.items()})
        rules = tuple(spec.rules) if spec.rules is not None else builtin_rules
        # Present = exactly these controls ([] = none), as with the rules.
        controls = tuple(spec.bandwidth_controls) if spec.bandwidth_controls is not None else builtin_controls
        return cls(spec, groups, rules, frozenset(spec.exempt_namespaces), from_cluster, controls)

    @property
    def enforcement(self) -> Enforcement:
        return self.spec.enforcement

    def enforcement_for(self, tenant: str | None) -> Enforcement:
        """The tenant's enforcement: its override in ``spec.overrides``, else the cluster's."""
        return self.spec.enforcement_for(tenant)

    @property
    def controlled_bands(self) -> frozenset[str]:
        return self._controlled_bands

    @property
    def require_kyc(self) -> bool:
        return self.spec.require_kyc

    @property
    def unknown_tenant(self) -> UnknownTenantAction:
        return self.spec.unknown_tenant

    @property
    def unknown_accelerator(self) -> UnknownAcceleratorAction:
        return self.spec.unknown_accelerator

    @property
    def device_access(self) -> DeviceAccessAction:
        return self.spec.device_access_without_request

    def control_names(self, control: BandwidthControl, country: str) -> bool:
        """Whether a bandwidth control's scope names a country, through its own list or a group.

        Groups are the effective ones: a group the policy replaces is replaced for controls too.
        """
        return country in control.jurisdictions or any(
            country in self.country_groups.get(group, frozenset()) for group in control.groups
        )

    def action_for(self, country: str) -> RuleMatch:
        found = self._matches.get(country)
        if found is None:
            found = self._match(country)
            self._matches[country] = found  # at most one entry per country
        return found

    def _match(self, country: str) -> RuleMatch:
        for index, rule in enumerate(self.rules):
            if country in rule.jurisdictions:
                return RuleMatch(rule.action, index, "jurisdictions")
            for group in rule.groups:
                if country in self.country_groups.get(group, frozenset()):
                    return RuleMatch(rule.action, index, group)
        return RuleMatch(Action.ALLOW, None, None)
