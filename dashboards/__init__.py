"""The merchant dashboards: pages for merchant staff (a login with a ``MerchantMember`` row).

A face on top, beside the promoter portal (``portal``): the pages read merchants, promoters,
tracking (``affiliate``), attribution, payouts and insights, and no app below imports them
(upstream never imports downstream; CONTRIBUTING.md has the layers). It: it reads every app's tables through its own bounded
``selectors``, writes only through the apps' services (``merchants.services.program_update``,
``promoters.services``), and nothing imports it but ``config/urls.py``.

It has no models; its templates are under
``templates/merchant/`` and its script under ``static/merchant/``.
"""
