"""Importable module that must never be imported by decoding a request naming it in ``__dMod``."""

IMPORTED = True
