"""What a decision returns: a stable reason code, the numbers behind it, and a message."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class Operation(StrEnum):
    CREATE = "CREATE"
    UPDATE = "UPDATE"


class Code(StrEnum):
    """Reason codes: a stable API that users, tests and dashboards depend on."""

    NO_ACCELERATOR = "NoAccelerator"
    EXEMPT = "Exempt"
    NOT_CONTROLLED = "NotControlled"
    JURISDICTION_ALLOWED = "JurisdictionAllowed"
    LICENSED = "Licensed"
    UNKNOWN_TENANT = "UnknownTenant"
    UNKNOWN_ACCELERATOR = "UnknownAccelerator"
    KYC_INCOMPLETE = "KYCIncomplete"
    PROHIBITED = "Prohibited"
    NO_LICENSE = "NoLicense"
    LICENSE_NOT_YET_VALID = "LicenseNotYetValid"
    LICENSE_EXPIRED = "LicenseExpired"
    LICENSE_REVOKED = "LicenseRevoked"
    LICENSE_SCOPE = "LicenseScope"
    LICENSE_CAP_EXCEEDED = "LicenseCapExceeded"
    DEVICE_ACCESS_WITHOUT_REQUEST = "DeviceAccessWithoutRequest"

    @property
    def admits(self) -> bool:
        return self in _ADMITTING


_ADMITTING = frozenset(
    {Code.NO_ACCELERATOR, Code.EXEMPT, Code.NOT_CONTROLLED, Code.JURISDICTION_ALLOWED, Code.LICENSED}
)


class AcceleratorUse(BaseModel):
    """One accelerator resource of the workload, resolved to the model that counts."""

    model_config = ConfigDict(frozen=True)

    resource: str
    profile: str
    model: str
    count: float  # accelerators, MIG slices as fractions of a chip, times the pod multiplier
    tpp_per_chip: float  # of one requested unit: a MIG slice has its share of the chip's TPP
    band: str | None
    controlled: bool  # in a controlled band, or covered by a bandwidth control for the tenant
    resolved: bool  # False: the model was assumed (unknownAccelerator: AssumeMostCapable)
    bandwidth_control: str | None = None  # the control that makes a use outside the bands controlled

    @property
    def tpp(self) -> float:
        return self.count * self.tpp_per_chip


class Verdict(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: Code
    allowed: bool
    message: str
    tenant: str | None = None
    jurisdiction: str | None = None  # the effective one: own or parent, whichever is stricter
    jurisdiction_source: str | None = None  # "own" or "parent"
    license: str | None = None
    accelerators: float = 0
    tpp: float | None = None  # all accelerators; None when there are none or a model was assumed
    controlled_tpp: float = 0
    controlled_accelerators: float = 0
    uses: tuple[AcceleratorUse, ...] = ()
    audit: bool = False  # admitted only because the policy's enforcement is Audit
    warnings: tuple[str, ...] = ()

    @property
    def would_deny(self) -> bool:
        """Denied, or admitted only because enforcement is Audit."""
        return not self.allowed or self.audit
