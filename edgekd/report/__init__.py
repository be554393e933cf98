"""Report stage: the typed rows and document (model.py), the one table of figures (figures.py), building and
publishing a report (builder.py, document.py), its views (cells, summary, markdown, terminal, html), the training
story (training.py), recommendations (recommend.py) and report-to-report comparison (compare.py)."""
