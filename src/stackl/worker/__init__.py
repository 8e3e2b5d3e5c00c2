"""The worker loop: claims tasks and runs them."""
