"""The promoter portal: the promoter's pages (``views``, ``insight_views``), their own API
(``api``: ``/api/v1/me/...``), the sign-up through an invite (``accounts``), their forms and
their bounded reads (``selectors``). A face on top beside ``dashboards``: it reads every app's
selectors and calls their services; nothing imports it but ``config/urls.py``. Its templates
are under ``templates/portal/``.
"""
