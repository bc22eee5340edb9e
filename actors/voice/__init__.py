"""Voice notes in and out: transcription, speech synthesis and the OGG/Opus encoding.

``audio`` (OpenAI's transcription and speech endpoints, the synthesizer interface),
``realtime`` (speech through the Realtime API), ``voicenote`` (PCM to a WhatsApp voice note)
and ``faithful`` (did the voice say what we wrote?).
"""
