"""Hardware targets: profile data (profiles.py), facts about this host (this_host.py), roofline estimates for
targets that are not measured here (roofline.py)."""
