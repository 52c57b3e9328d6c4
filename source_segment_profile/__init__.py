from source_segment_profile.source import SourceSegmentProfile

__all__ = ["SourceSegmentProfile"]
