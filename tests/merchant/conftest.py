from tests.merchant.world import other, world  # noqa: F401  (fixtures for the merchant tests)
