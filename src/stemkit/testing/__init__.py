"""A conformance suite that any provider package runs against its own provider.

In the provider's tests::

    import pytest
    import stemkit
    from stemkit.testing import ProviderConformance

    class TestMyProviderConformance(ProviderConformance):
        @pytest.fixture
        def separator(self):
            with stemkit.load("mine?quality=fast", api_key="sk_test") as sep:
                yield sep

        @pytest.fixture
        def secret(self):          # optional: the API key that must never leak
            return "sk_test"

Every ``test_*`` method of :class:`ProviderConformance` then runs against it: the StemSet contract, honest
capabilities, bad input, ``close()`` and the context manager, sync/async agreement, well-formed progress
events, and secrets kept out of ``repr``, logs and error messages.
"""

from stemkit.testing.conformance import ProviderConformance, demo_clip

__all__ = ["ProviderConformance", "demo_clip"]
