"""Request and response shapes of the HTTP API, declared once as pydantic models.

``requests`` validates bodies and query strings at the edge (``parse`` maps pydantic's errors to the
API's 400s); ``responses`` describes what comes back. ``api/openapi.py`` builds the OpenAPI document
from these same models and the functions' route tables.
"""
