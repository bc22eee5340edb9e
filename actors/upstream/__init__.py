"""The clients of the services wabot depends on: OpenAI's model and Whapi.Cloud.

``model`` (Conversations and Responses on the OpenAI SDK), ``whapi`` (Whapi's REST API on
httpx), ``retry`` (the one retry policy, on stamina) and ``budget`` (OpenAI's rate limits as a
budget that turns spend fairly).
"""
