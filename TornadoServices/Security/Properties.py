"""DIRAC security property names, as found in ``/Registry/Groups/<g>/Properties`` and ``auth_<method>`` lists."""
from __future__ import annotations

from enum import Enum


class SecurityProperty(str, Enum):
    """Every property DIRAC knows; members compare equal to their string value."""

    TRUSTED_HOST = "TrustedHost"
    CS_ADMINISTRATOR = "CSAdministrator"
    JOB_ADMINISTRATOR = "JobAdministrator"
    JOB_MONITOR = "JobMonitor"
    JOB_SHARING = "JobSharing"
    GENERIC_PILOT = "GenericPilot"
    PILOT = "Pilot"
    SERVICE_ADMINISTRATOR = "ServiceAdministrator"
    NORMAL_USER = "NormalUser"
    SOFTWARE_MANAGER = "SoftwareManager"
    ALARMS_MANAGEMENT = "AlarmsManagement"
    PROXY_MANAGEMENT = "ProxyManagement"
    SITE_MANAGER = "SiteManager"
    OPERATOR = "Operator"
    FULL_DELEGATION = "FullDelegation"
    LIMITED_DELEGATION = "LimitedDelegation"
    PRIVATE_LIMITED_DELEGATION = "PrivateLimitedDelegation"
    FC_MANAGEMENT = "FileCatalogManagement"
    STAGE_ALLOWED = "StageAllowed"
    PRODUCTION_MANAGEMENT = "ProductionManagement"
    PRODUCTION_SHARING = "ProductionSharing"
    PRODUCTION_USER = "ProductionUser"

    def __str__(self) -> str:
        return self.value


TRUSTED_HOST = SecurityProperty.TRUSTED_HOST.value
CS_ADMINISTRATOR = SecurityProperty.CS_ADMINISTRATOR.value
JOB_ADMINISTRATOR = SecurityProperty.JOB_ADMINISTRATOR.value
JOB_MONITOR = SecurityProperty.JOB_MONITOR.value
JOB_SHARING = SecurityProperty.JOB_SHARING.value
GENERIC_PILOT = SecurityProperty.GENERIC_PILOT.value
PILOT = SecurityProperty.PILOT.value
SERVICE_ADMINISTRATOR = SecurityProperty.SERVICE_ADMINISTRATOR.value
NORMAL_USER = SecurityProperty.NORMAL_USER.value
SOFTWARE_MANAGER = SecurityProperty.SOFTWARE_MANAGER.value
ALARMS_MANAGEMENT = SecurityProperty.ALARMS_MANAGEMENT.value
PROXY_MANAGEMENT = SecurityProperty.PROXY_MANAGEMENT.value
SITE_MANAGER = SecurityProperty.SITE_MANAGER.value
OPERATOR = SecurityProperty.OPERATOR.value
FULL_DELEGATION = SecurityProperty.FULL_DELEGATION.value
LIMITED_DELEGATION = SecurityProperty.LIMITED_DELEGATION.value
PRIVATE_LIMITED_DELEGATION = SecurityProperty.PRIVATE_LIMITED_DELEGATION.value
FC_MANAGEMENT = SecurityProperty.FC_MANAGEMENT.value
STAGE_ALLOWED = SecurityProperty.STAGE_ALLOWED.value
PRODUCTION_MANAGEMENT = SecurityProperty.PRODUCTION_MANAGEMENT.value
PRODUCTION_SHARING = SecurityProperty.PRODUCTION_SHARING.value
PRODUCTION_USER = SecurityProperty.PRODUCTION_USER.value

#: All property names, for validating CS values.
ALL_PROPERTIES = frozenset(p.value for p in SecurityProperty)
