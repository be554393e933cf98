"""Report stage: the versioned document (document.py), its HTML view (html.py), the training story
(training.py), recommendations (recommend.py) and report-to-report comparison (compare.py)."""
