"""ringmesh topology package."""
