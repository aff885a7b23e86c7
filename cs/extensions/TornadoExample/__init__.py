"""Example extension of the demo configuration: services found by the <Extension>.<System>System.Service convention."""
