"""pouw package."""
