"""The Flask sample: a web API protected by Entra ID whose @vault_token decorator gets its users' tokens
from TokenVault (see app.py, vault_token.py and background.py)."""
