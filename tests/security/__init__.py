"""Security rules checked against the real gateway."""
