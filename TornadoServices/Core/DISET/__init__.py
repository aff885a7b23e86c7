"""DIRAC's ``DIRAC.Core.DISET`` names that client code imports (``ThreadConfig``)."""
