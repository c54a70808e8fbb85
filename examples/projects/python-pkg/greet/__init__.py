"""A tiny package for the CI example: its unittest suite runs in hardened mode."""


def greet(name: str) -> str:
    """Return a greeting for `name`."""
    return f"hello, {name.strip() or 'world'}"
