"""Local, strict emulators of the provider APIs crmsync talks to, and a reference CRM backend.

Strict means: the sandbox refuses what the real service refuses, with the real status and error body,
so that an adapter that passes here behaves the same against Google and Microsoft.
"""
