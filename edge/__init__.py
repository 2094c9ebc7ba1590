"""ringmesh edge package."""
