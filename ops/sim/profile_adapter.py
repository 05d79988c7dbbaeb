"""Reading a measured ``profile.json`` into a ``SimProfile`` (filled in below)."""
