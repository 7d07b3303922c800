"""The status page of ``reconciler run``: environments, flows, drift, history and diffs, live.

- :mod:`.app`: routes, login and actions, the headers every page is sent with;
- :mod:`.views` and :mod:`.flowview`: what each page shows, as plain data;
- :mod:`.diffview`: the semantic diff shaped for a page;
- :mod:`.events`: server-sent events (``GET /events``);
- :mod:`.auth`: sessions and CSRF;
- ``templates/`` (Jinja2, autoescaped) and ``static/`` (the page's own script and style sheet).
"""

from .app import CSP, EVENTS_PATH, WebUI

__all__ = ["WebUI", "CSP", "EVENTS_PATH"]
