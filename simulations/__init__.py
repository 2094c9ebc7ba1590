"""ringmesh simulations package."""
