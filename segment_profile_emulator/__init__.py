"""A local emulator of the Segment Profile API, serving a deterministic synthetic space.

Run it with `segment-profile-emulator --help` (or `python -m segment_profile_emulator`); drive it
from tests with `segment_profile_emulator.testing.running_emulator`.
"""
