"""Generated scenes with exact ground truth, for training and testing the demo models.

Each use case has a module (``production``, ``cleanroom``, ``cage``) whose scenarios
render frames (numpy + OpenCV) together with per-frame boxes, labels and track ids
and a timeline of the events a correct appliance should report.
"""
