"""The actors: the runtime, the customer's conversation and the upstream clients.

- ``actors.runtime``: supervisor, registry, mailboxes, idle stop (no WhatsApp, no OpenAI).
- ``actors.customer``: the user actor, its buffering rules and its turns.
- ``actors.upstream``: the OpenAI model client, the Whapi and Beds24 clients, retries, the
  rate budget.
- ``actors.voice``: transcription, speech and voice notes.
- ``actors.booking``: the optional booking tools (``check_availability`` on Beds24, its rules,
  and the validator of answers against it).
- ``actors.channels``: the WhatsApp numbers one deployment serves, each with its settings.
- ``actors.settings`` (and ``settings_doc``): every setting, declared once.
- ``actors.wiring``: opening and closing what every customer's actor shares.
- ``actors.tools`` and ``actors.validation``: the extension points a business's own module
  imports (``WABOT_TOOLS_MODULE``, ``WABOT_VALIDATOR_MODULE``), so their paths stay put.
"""
