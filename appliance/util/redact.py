"""Keeping personal data out of logs: idTokens show only their last four characters."""


def mask(token: str) -> str:
    return "*" * max(len(token) - 4, 0) + token[-4:]
