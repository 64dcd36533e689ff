"""The only code that talks to model servers (TGI native, OpenAI-compatible, demo server)."""
