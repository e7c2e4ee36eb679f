"""Adapters: the ports of ``tokenvault.ports`` (and the caller-token check) on Azure, Entra ID
and local files. Each translates its library's exceptions into ``VaultError``s at its boundary.
They may import the core; they never import the entry points (``bootstrap``, ``http``, ``cli``).
"""
