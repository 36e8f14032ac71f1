"""The fault-injection suite (issue 10; README "Reliability"). A package, so that its
conftest does not shadow tests/conftest.py for `from conftest import ...`."""
