"""The FastAPI sample: the Flask sample's web API as a FastAPI dependency, with the async client
(see app.py, dependency.py and background.py)."""
