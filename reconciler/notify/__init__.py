"""Notifications: events of the service to people and forges (``[[notify]]``), delivered in the background.

- :mod:`.settings`: the ``[[notify]]`` models (webhook, slack, github, gitlab,
  gitea), their filters, and the defaults of delivery;
- :mod:`.status`: commit statuses (pure): which event sets which state, each
  forge's names for it and its request;
- :mod:`.secret`: credentials from a variable or a file, read when used;
- :mod:`.sinks`: what a delivery is for each type, on the shared HTTP client;
- :mod:`.dispatcher`: the service's Notifier (a bounded queue, one thread,
  retries with backoff, a flush on stop);
- :mod:`.plan`: the commit status of ``plan --against --status``.

The contract the worker uses is :mod:`reconciler.events`.
"""

from typing import TYPE_CHECKING

from reconciler.lazy import lazy_attributes

# Imported when a name is first used (PEP 562): a config's ``[[notify]]`` models
# (``reconciler.notify.settings``) must not pull in the dispatcher, the sinks and the HTTP
# client on every command line run (``tests/test_imports_budget.py``).
_WHERE = {
    "Dispatcher": "dispatcher", "plan_status": "plan", "post_plan_status": "plan",
    "DeliverySettings": "settingsbase",
    **dict.fromkeys(("NOTIFY_MODELS", "ForgeNotify", "NotifyBase", "NotifyConfig", "SlackNotify",
                     "WebhookNotify"), "settings"),
    **dict.fromkeys(("Delivery", "DeliveryFailed", "ForgeSink", "Sink", "SlackSink", "WebhookSink", "build_sinks",
                     "sign", "slack_text"), "sinks"),
    **dict.fromkeys(("CommitStatus", "context_of", "forge_request", "forge_state", "status_link", "status_of"),
                    "status"),
}

if TYPE_CHECKING:
    from .dispatcher import Dispatcher
    from .plan import plan_status, post_plan_status
    from .settings import NOTIFY_MODELS, DeliverySettings, ForgeNotify, NotifyBase, NotifyConfig, SlackNotify, WebhookNotify
    from .sinks import Delivery, DeliveryFailed, ForgeSink, Sink, SlackSink, WebhookSink, build_sinks, sign, slack_text
    from .status import CommitStatus, context_of, forge_request, forge_state, status_link, status_of


__getattr__ = lazy_attributes(__name__, _WHERE)


__all__ = [
    "Dispatcher", "DeliverySettings", "NOTIFY_MODELS", "NotifyBase", "NotifyConfig", "WebhookNotify", "SlackNotify",
    "ForgeNotify", "Sink", "Delivery", "DeliveryFailed", "WebhookSink", "SlackSink", "ForgeSink", "build_sinks", "sign",
    "slack_text", "CommitStatus", "status_of", "forge_state", "forge_request", "context_of", "status_link",
    "plan_status", "post_plan_status",
]
