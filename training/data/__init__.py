"""medaudit package."""
