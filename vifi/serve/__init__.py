"""`vifi serve`: the model and an index kept loaded behind a small web app (vifi.serve.app)."""
