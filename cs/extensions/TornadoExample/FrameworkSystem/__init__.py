"""Framework system of the example extension."""
