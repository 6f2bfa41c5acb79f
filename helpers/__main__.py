"""``python -m helpers``: check that the course can run here (:func:`helpers.environment.check`)."""

from helpers.environment import check

print(check())
