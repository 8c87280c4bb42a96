"""The merchant dashboards: pages for merchant staff (a login with a ``MerchantMember`` row).

A small package of its own rather than ``affiliate/merchant_views.py``: the pages read
tracking (``affiliate``), attribution, payouts and promoters, and ``affiliate`` sits at the
bottom of the dependency order (upstream never imports downstream). Like the promoter
portal, this is a face on top: it reads every app's tables through its own bounded
``selectors``, writes only through the apps' services (``merchants.services.program_update``,
``promoters.services``), and nothing imports it but ``config/urls.py``.

It has no models, so it needs no entry in ``INSTALLED_APPS``; its templates are under
``templates/merchant/`` and its script under ``static/merchant/``.
"""
