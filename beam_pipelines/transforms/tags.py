"""Output tags shared by the transforms."""

VALID = 'valid'
DEAD_LETTER = 'dead_letter'
DUPLICATES = 'duplicates'
LATE = 'late'
RETRACTIONS = 'retractions'
