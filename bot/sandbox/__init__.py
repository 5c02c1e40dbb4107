"""In-process stand-ins for the services the bot talks to, for ``demo`` and the tests."""
